//! The integration trials, registered by their definitions: build.rs reads every
//! `pub async fn name() -> TestResult` of tests/integration/*_tests.rs (see
//! [`crate::discover`]), and [`trials!`](crate::trials) builds them. The only list kept
//! by hand is the one of test modules with their group names, and [`Registry::check`]
//! fails when a module with trials is missing from it.

include!(concat!(env!("OUT_DIR"), "/trials.rs"));

/// The trials `trials!` built, and the modules it was given.
pub struct Registry<T> {
    pub trials: Vec<T>,
    listed: &'static [&'static str],
}

impl<T> Registry<T> {
    #[doc(hidden)]
    pub fn new(trials: Vec<T>, listed: &'static [&'static str]) -> Self {
        Self { trials, listed }
    }

    /// Fails naming every test module with trials that `trials!` was not given (its
    /// trials would silently not run).
    pub fn check(&self) -> Result<(), String> {
        let mut missing: Vec<&str> = FOUND
            .iter()
            .map(|(module, ..)| *module)
            .filter(|m| !self.listed.contains(m))
            .collect();
        missing.dedup();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "tests/integration/{{{}}}.rs hold trials but are not in main.rs's `trials!` \
                 (add `\"group\" => module` and `mod module;`)",
                missing.join(",")
            ))
        }
    }
}

/// The trials of the listed test modules, each made by `make(name, function, exclusive)`
/// where `name` is `group::trial`: `trials! { make_trial; "faults" => fault_tests, ... }`.
/// A trial is a `pub async fn name() -> TestResult` of the module (found by build.rs);
/// its name drops a leading `<module without _tests>_` (`chart_tests::chart_x` is
/// `chart::x`); it is exclusive when its body opens with [`exclusive!`](crate::exclusive).
#[macro_export]
macro_rules! trials {
    ($make:path; $($group:literal => $module:ident),* $(,)?) => {
        $crate::registry::Registry::new(
            {
                let mut all = Vec::new();
                $( all.extend($crate::__trials_in!($make, $group, $module)); )*
                all
            },
            &[$(stringify!($module)),*],
        )
    };
}

/// Opens a trial that must run alone (it restarts or stops parts of the bed):
/// `pub async fn name() -> TestResult { exclusive!(); ... }`. It expands to nothing;
/// build.rs reads it, and refuses one anywhere else.
#[macro_export]
macro_rules! exclusive {
    () => {};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_left_out_of_the_list_fails_the_check() {
        let mut all: Vec<&'static str> = FOUND.iter().map(|f| f.0).collect();
        all.dedup();
        let everything: &'static [&'static str] = Vec::leak(all.clone());
        assert_eq!(Registry::<()>::new(Vec::new(), everything).check(), Ok(()));
        let Some((left_out, rest)) = all.split_first() else {
            return;
        };
        let rest: &'static [&'static str] = Vec::leak(rest.to_vec());
        let err = Registry::<()>::new(Vec::new(), rest).check().unwrap_err();
        assert!(err.contains(left_out), "{err}");
    }
}
