//! One step's CSV, read as the predecessor's `pandas.read_csv` reads it: UTF-8 (a BOM is
//! skipped), else GBK (`encoding_rs`, the WHATWG decoder that browsers use); header names
//! matched exactly against the known aliases; one value per data row, empty fields as NaN and
//! blank lines skipped; numbers parsed correctly rounded (`%.3f` and `%g` with either case of
//! exponent, which is what pandas' converter gives for these short decimals). Fields are split
//! by the `csv` crate, which handles quoting the same way pandas does.

use std::path::Path;

use super::export::Kind;

/// Header names accepted for each column, in the predecessor's order of preference.
const VG: [&str; 3] = ["Vg", "gate_voltage", "vg"];
const ID: [&str; 3] = ["Id", "drain_current", "id"];
const TIME: [&str; 3] = ["Time", "timestamp", "time"];

/// The two columns of a step: `(Vg, Id)` for a transfer, `(Time, Id)` for a transient.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepData {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl StepData {
    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

/// Reads `path` and returns its two columns for a step of `kind`; the error says what is wrong
/// (the caller names the step).
pub fn read_step(path: &Path, kind: Kind) -> Result<StepData, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    parse_step(&bytes, kind)
}

/// Text of a CSV file: UTF-8 without its BOM, else GBK.
fn decode(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.into());
    }
    let (text, had_errors) = encoding_rs::GBK.decode_without_bom_handling(bytes);
    if had_errors {
        return Err("neither UTF-8 nor GBK text".into());
    }
    Ok(text)
}

/// Parses CSV text; see the module doc.
pub fn parse_step(bytes: &[u8], kind: Kind) -> Result<StepData, String> {
    let text = decode(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .byte_headers()
        .map_err(|e| format!("unreadable header: {e}"))?
        .clone();
    if header.is_empty() {
        return Err("empty file (no header)".into());
    }
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let column = |aliases: &[&str]| {
        aliases
            .iter()
            .find_map(|a| names.iter().position(|n| n == a))
    };
    let (x_aliases, x_name) = match kind {
        Kind::Transfer => (&VG, "Vg"),
        Kind::Transient => (&TIME, "Time"),
    };
    let (Some(xi), Some(yi)) = (column(x_aliases), column(&ID)) else {
        return Err(format!(
            "no {x_name} and Id columns (header: {})",
            names.join(",")
        ));
    };
    let mut data = StepData::default();
    let mut record = csv::ByteRecord::new();
    let mut line = 1;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(format!("unreadable row after line {line}: {e}")),
        }
        line = record.position().map_or(line + 1, |p| p.line());
        // pandas skips blank lines: a record of one empty field
        if record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if record.len() > names.len() {
            return Err(format!(
                "line {line} has {} fields, the header {}",
                record.len(),
                names.len()
            ));
        }
        let value = |i: usize| -> Result<f64, String> {
            let Some(field) = record.get(i) else {
                return Ok(f64::NAN);
            };
            parse_number(field).ok_or_else(|| {
                format!(
                    "line {line}: {:?} in column {} is not a number",
                    String::from_utf8_lossy(field),
                    names[i]
                )
            })
        };
        data.x.push(value(xi)?);
        data.y.push(value(yi)?);
    }
    Ok(data)
}

/// A decimal number, `nan`/`inf` spellings, or NaN for an empty field.
fn parse_number(field: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(field).ok()?.trim();
    if text.is_empty() {
        return Some(f64::NAN);
    }
    text.parse::<f64>().ok()
}

/// Data rows of a step CSV as the parser will see them, counted fast (line ends only), so
/// that the transient dataset can be sized before any CSV is parsed. [`parse_step`] is the
/// judge: a file where the two disagree (quoted line breaks, a bad row) is counted again by
/// parsing it.
pub fn count_rows(bytes: &[u8]) -> usize {
    let mut lines = bytes.split(|&b| b == b'\n');
    lines.next(); // header
    lines
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_bom_exponents_and_ragged_columns() {
        let d = parse_step(
            b"\xef\xbb\xbfTime,Id\n0.001,1.5E-06\n0.002,-2e-7\n\n0.003\n",
            Kind::Transient,
        )
        .unwrap();
        assert_eq!(d.x, [0.001, 0.002, 0.003]);
        assert_eq!(d.y[..2], [1.5e-6, -2e-7]);
        assert!(d.y[2].is_nan());
        let d = parse_step(
            b"gate_voltage,drain_current,extra\n-0.300,1e-08,x\n",
            Kind::Transfer,
        )
        .unwrap();
        assert_eq!((d.x[0], d.y[0]), (-0.3, 1e-8));
        assert_eq!(count_rows(b"Vg,Id\n1,2\n\n3,4"), 2);
    }

    #[test]
    fn gbk_text_and_failures() {
        // "时间" (time) in GBK as an extra column
        let gbk = b"Time,Id,\xca\xb1\xbc\xe4\n0.001,1e-6,1\n";
        assert_eq!(parse_step(gbk, Kind::Transient).unwrap().len(), 1);
        let e = parse_step(b"Vg,Id\n", Kind::Transient).unwrap_err();
        assert!(e.contains("no Time and Id columns"), "{e}");
        let e = parse_step(b"Vg,Id\n0.1,abc\n", Kind::Transfer).unwrap_err();
        assert!(e.contains("line 2") && e.contains("abc"), "{e}");
        let e = parse_step(b"Vg,Id\n0.1,2,3\n", Kind::Transfer).unwrap_err();
        assert!(e.contains("3 fields"), "{e}");
        assert!(parse_step(b"", Kind::Transfer).is_err());
    }
}
