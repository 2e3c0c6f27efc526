//! Reading the input files of the offline commands (`inject`, `explain -f`): a path or
//! `-` for stdin, as multi-document YAML.

use std::io::Read;

use serde_json::Value;

use crate::error::Error;

pub fn read_input(path: &str) -> Result<String, Error> {
    let mut s = String::new();
    if path == "-" {
        std::io::stdin().read_to_string(&mut s)?;
    } else {
        s = std::fs::read_to_string(path).map_err(|e| Error::Input {
            path: path.to_owned(),
            source: e.into(),
        })?;
    }
    Ok(s)
}

/// The documents of the YAML file at `path` (`-`: stdin); `kind: List` is flattened.
pub fn documents(path: &str) -> Result<Vec<Value>, Error> {
    crate::inject::offline::yaml_documents(&read_input(path)?).map_err(|source| Error::Input {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bad_yaml_is_reported_with_its_file_and_document() {
        let dir = std::env::temp_dir().join(format!("spi-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f.yaml");
        std::fs::write(&path, "a: 1\n---\n: : :\n  - [").expect("write");
        let path = path.display().to_string();
        let e = super::documents(&path).expect_err("bad");
        assert!(
            e.to_string().starts_with(&format!("{path}: document 2")),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
