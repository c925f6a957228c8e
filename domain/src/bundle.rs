//! Workflow bundles as ZIP files (WF-009, WF-013): one pretty-printed JSON file per workflow.
//! Reading is bounded (entries, sizes, compression ratio), so an upload cannot exhaust memory.

use std::io::{Cursor, Read, Write};

use serde_json::Value;
use zip::write::SimpleFileOptions;

use crate::error::{Error, Result};

/// Most workflows one bundle may carry.
pub const MAX_ENTRIES: usize = 100;
/// Largest uncompressed workflow file.
pub const MAX_ENTRY_BYTES: u64 = 5 * 1024 * 1024;
/// Largest uncompressed bundle.
pub const MAX_TOTAL_BYTES: u64 = 50 * 1024 * 1024;

fn file_name(workflow: &Value, index: usize) -> String {
    let name: String = workflow
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("workflow")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let id = workflow
        .get("id")
        .and_then(Value::as_str)
        .map_or_else(|| index.to_string(), str::to_owned);
    format!("{name}-{id}.json")
}

/// A ZIP with one `<name>-<id>.json` per workflow.
pub fn to_zip(workflows: &[Value]) -> Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let fail = |e: &dyn std::fmt::Display| {
        Error::conflict("bundle_failed", format!("writing the ZIP failed: {e}"))
    };
    for (i, wf) in workflows.iter().enumerate() {
        zip.start_file(file_name(wf, i), options)
            .map_err(|e| fail(&e))?;
        let text = serde_json::to_vec_pretty(wf).map_err(|e| fail(&e))?;
        zip.write_all(&text).map_err(|e| fail(&e))?;
    }
    Ok(zip.finish().map_err(|e| fail(&e))?.into_inner())
}

/// The workflows in an uploaded ZIP: every `.json` file (others, and folders, are skipped).
pub fn from_zip(bytes: &[u8]) -> Result<Vec<Value>> {
    let invalid = |m: String| Error::invalid("file", m);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| invalid(format!("is not a ZIP file: {e}")))?;
    let mut out = Vec::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| invalid(format!("entry {i} is unreadable: {e}")))?;
        let name = file
            .name()
            .map_err(|e| invalid(format!("entry {i} has an unreadable name: {e}")))?
            .into_owned();
        if file.is_dir()
            || !name.to_ascii_lowercase().ends_with(".json")
            || name.contains("__MACOSX")
        {
            continue;
        }
        if out.len() == MAX_ENTRIES {
            return Err(invalid(format!("holds more than {MAX_ENTRIES} workflows")));
        }
        if file.size() > MAX_ENTRY_BYTES {
            return Err(invalid(format!(
                "`{name}` is larger than {MAX_ENTRY_BYTES} bytes"
            )));
        }
        let mut text = Vec::new();
        // Read at most one byte past the limit: sizes in the header can lie.
        (&mut file)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| invalid(format!("`{name}` is unreadable: {e}")))?;
        total += text.len() as u64;
        if text.len() as u64 > MAX_ENTRY_BYTES || total > MAX_TOTAL_BYTES {
            return Err(invalid(format!("expands beyond {MAX_TOTAL_BYTES} bytes")));
        }
        let value: Value = serde_json::from_slice(&text)
            .map_err(|e| invalid(format!("`{name}` is not valid JSON: {e}")))?;
        match value {
            // An n8n export of several workflows is an array.
            Value::Array(items) => out.extend(items),
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return Err(invalid("holds no .json workflow files".into()));
    }
    if out.len() > MAX_ENTRIES {
        return Err(invalid(format!("holds more than {MAX_ENTRIES} workflows")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn workflows_round_trip_through_a_zip() {
        let wfs = vec![
            json!({"id": "a1", "name": "Orders / nightly", "nodes": [], "connections": {}}),
            json!({"id": "b2", "name": "Invoices", "nodes": [{"name": "x"}], "connections": {}}),
        ];
        let zip = to_zip(&wfs).unwrap_or_default();
        assert_eq!(from_zip(&zip).ok(), Some(wfs));
    }

    #[test]
    fn garbage_and_empty_bundles_are_refused() {
        assert!(matches!(from_zip(b"not a zip"), Err(Error::Validation(_))));
        assert!(matches!(
            from_zip(&to_zip(&[]).unwrap_or_default()),
            Err(Error::Validation(_))
        ));
    }

    #[test]
    fn a_bomb_is_stopped_at_the_entry_limit() {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let _ = zip.start_file("huge.json", options);
        let chunk = vec![b' '; 1024 * 1024];
        for _ in 0..6 {
            let _ = zip.write_all(&chunk);
        }
        let bytes = zip.finish().map(Cursor::into_inner).unwrap_or_default();
        assert!(bytes.len() < 100_000, "it compresses well");
        assert!(matches!(from_zip(&bytes), Err(Error::Validation(_))));
    }
}
