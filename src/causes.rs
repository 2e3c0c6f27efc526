//! How a failure of background work is told in a log line: the error with every source
//! it has (`client error (Connect): tcp connect error: Connection refused (os error
//! 111)`, not `client error (Connect)`), and a hint only where the error itself points
//! at one, so that a refused connection does not send the user to check RBAC or CRDs.

use std::fmt;

use kube::runtime::watcher;

/// An error and all its sources, joined with `": "`, for one log line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        // Some errors repeat their source's text in their own.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// Displays an error and all its sources, joined with `": "` (see [`chain`]):
/// `tracing::warn!(error = %Chain(&e), ...)`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&chain(self.0))
    }
}

/// What the API server's answer (or its absence) says to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiCause {
    /// No answer at all: connection refused, DNS, TLS, timeout.
    Unreachable,
    /// 401: the credentials were refused.
    Unauthorized,
    /// 403: RBAC.
    Forbidden,
    /// 404: the resource (or its CRD) does not exist.
    NotFound,
    /// Any other answer.
    Other,
}

impl ApiCause {
    /// The cause of a client error.
    pub fn of(e: &kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => Self::of_code(s.code),
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::RustlsTls(_) => {
                Self::Unreachable
            }
            kube::Error::Auth(_) => Self::Unauthorized,
            _ => Self::Other,
        }
    }

    /// The cause of a watch's error.
    pub fn of_watch(e: &watcher::Error) -> Self {
        match e {
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e) => Self::of(e),
            watcher::Error::WatchError(s) => Self::of_code(s.code),
            _ => Self::Other,
        }
    }

    fn of_code(code: u16) -> Self {
        match code {
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            _ => Self::Other,
        }
    }

    /// The hint for this cause: `forbidden` names the permission the call needs,
    /// `not_found` what must exist. Empty where the error suggests nothing.
    pub fn hint(self, forbidden: &str, not_found: &str) -> String {
        match self {
            Self::Unreachable => "The API server could not be reached (see the error's cause): check the API server address, DNS and any NetworkPolicy between the injector and the API server".to_owned(),
            Self::Unauthorized => "The API server refused the credentials: check the ServiceAccount token (or the kubeconfig)".to_owned(),
            Self::Forbidden => format!("Forbidden: {forbidden}"),
            Self::NotFound => format!("Not found: {not_found}"),
            Self::Other => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_shows_the_os_error_under_the_client_error() {
        let e = Outer(std::io::Error::from_raw_os_error(111));
        let text = Chain(&e).to_string();
        assert!(text.starts_with("client error (Connect): "), "{text}");
        assert!(text.contains("os error 111"), "{text}");
    }

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("no", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn hints_follow_from_the_error_only() {
        assert_eq!(ApiCause::of(&api(403)), ApiCause::Forbidden);
        assert_eq!(ApiCause::of(&api(404)), ApiCause::NotFound);
        assert_eq!(ApiCause::of(&api(401)), ApiCause::Unauthorized);
        assert_eq!(ApiCause::of(&api(500)), ApiCause::Other);
        assert_eq!(ApiCause::Other.hint("rbac", "crd"), "");
        let unreachable = ApiCause::Unreachable.hint("rbac", "crd");
        assert!(!unreachable.contains("rbac") && !unreachable.contains("crd"));
        assert!(
            ApiCause::Forbidden
                .hint("may list stellarnodes", "crd")
                .contains("may list stellarnodes")
        );
        assert_eq!(
            ApiCause::of_watch(&watcher::Error::InitialListFailed(api(403))),
            ApiCause::Forbidden
        );
    }
}
