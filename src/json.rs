//! Reading the JSON files gpufleet writes (state, saved plans, simulator
//! worlds) when a person or a crash may have damaged them: an error names the
//! field that is wrong (`changeset.actions[2].count`) besides serde_json's
//! line and column.

use serde::de::DeserializeOwned;

/// Where in a document a value failed to deserialize, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}{source}", located(at))]
pub struct JsonError {
    /// Dotted path of the field, e.g. `instances[0].launched_at`; empty at the top.
    pub at: String,
    #[source]
    pub source: serde_json::Error,
}

fn located(at: &str) -> String {
    if at.is_empty() { String::new() } else { format!("{at}: ") }
}

/// `serde_json::from_slice`, keeping the path of the field that failed.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        JsonError { at: if at == "." { String::new() } else { at }, source: e.into_inner() }
    })?;
    de.end().map_err(|source| JsonError { at: String::new(), source })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_the_line() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            items: Vec<Item>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Item {
            count: u32,
        }
        let err = from_slice::<Doc>(b"{\"items\": [\n{\"count\": 1},\n{\"count\": \"two\"}]}").unwrap_err();
        assert_eq!(err.at, "items[1].count");
        assert!(err.to_string().starts_with("items[1].count: invalid type: string"), "{err}");
        assert!(err.to_string().contains("line 3 column"), "{err}");
        let err = from_slice::<Doc>(b"{\"items\": []} trailing").unwrap_err();
        assert_eq!(err.at, "");
        assert!(from_slice::<Doc>(b"{\"items\": [").is_err());
    }
}
