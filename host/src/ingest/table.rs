//! `step_info_table`: one row per stored step, built from the JSON step entries with the
//! predecessor's rules (a pandas DataFrame of flattened dicts, stored as a packed compound,
//! `specs/hdf5_format.md` §4.5): columns in first-seen order; all-integer columns int64;
//! numbers with a gap or a float float64 (gap = NaN); everything else fixed-length text
//! `S<max(10, longest value in characters)>` holding the UTF-8 bytes cut to that width, gaps
//! empty; a gap-free boolean column `S50` (`True` / `False`).

use hdf5::types::{CompoundField, CompoundType, FloatSize, IntSize, TypeDescriptor};

use super::json::Json;

/// One column of a step table.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    Int(Vec<i64>),
    Float(Vec<f64>),
    /// Fixed-width null-padded bytes.
    Text {
        width: usize,
        values: Vec<Vec<u8>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
}

/// A step table ready to be stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepTable {
    pub columns: Vec<Column>,
    rows: usize,
}

/// The flattened row of one JSON step: `step_index` (within its kind), the basic fields when
/// present, `parameters` as `param_*` and `workflow_info` as `workflow_*` (nested keys joined
/// with `_`, nulls dropped). MiniTest writes `params`, not `parameters`, so real tables have
/// no `param_*` columns.
pub fn step_row(step: &Json, index: usize) -> Vec<(String, Json)> {
    let mut row = vec![("step_index".to_owned(), Json::Int(index as i64))];
    for key in ["type", "start_time", "end_time", "reason", "data_file"] {
        if let Some(v) = step.get(key) {
            row.push((key.to_owned(), v.clone()));
        }
    }
    for (key, prefix) in [("parameters", "param"), ("workflow_info", "workflow")] {
        if let Some(v) = step.get(key) {
            flatten(v, prefix, &mut row);
        }
    }
    row
}

fn flatten(v: &Json, prefix: &str, out: &mut Vec<(String, Json)>) {
    let Json::Object(fields) = v else { return };
    for (k, v) in fields {
        let key = format!("{prefix}_{k}");
        match v {
            Json::Object(_) => flatten(v, &key, out),
            Json::Null => {}
            v => match out.iter_mut().find(|(name, _)| *name == key) {
                Some(slot) => slot.1 = v.clone(),
                None => out.push((key, v.clone())),
            },
        }
    }
}

impl StepTable {
    /// Infers the column types from the rows as pandas does (see the module doc).
    pub fn from_rows(rows: &[Vec<(String, Json)>]) -> StepTable {
        let mut names: Vec<&str> = Vec::new();
        for row in rows {
            for (k, _) in row {
                if !names.contains(&k.as_str()) {
                    names.push(k);
                }
            }
        }
        let columns = names
            .into_iter()
            .map(|name| {
                let cells: Vec<Option<&Json>> = rows
                    .iter()
                    .map(|r| {
                        r.iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v)
                            .filter(|v| !matches!(v, Json::Null))
                    })
                    .collect();
                Column {
                    name: name.to_owned(),
                    data: infer(&cells),
                }
            })
            .collect();
        StepTable {
            columns,
            rows: rows.len(),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// The packed compound type of a row.
    pub fn type_descriptor(&self) -> TypeDescriptor {
        let mut offset = 0;
        let fields = self
            .columns
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let ty = match &c.data {
                    ColumnData::Int(_) => TypeDescriptor::Integer(IntSize::U8),
                    ColumnData::Float(_) => TypeDescriptor::Float(FloatSize::U8),
                    ColumnData::Text { width, .. } => TypeDescriptor::FixedAscii(*width),
                };
                let field = CompoundField {
                    name: c.name.clone(),
                    offset,
                    index,
                    ty,
                };
                offset += field.ty.size();
                field
            })
            .collect();
        TypeDescriptor::Compound(CompoundType {
            fields,
            size: offset,
        })
    }

    /// The rows as stored: packed little-endian records.
    pub fn to_bytes(&self) -> Vec<u8> {
        let size: usize = self.type_descriptor().size();
        let mut out = vec![0u8; size * self.rows];
        let mut offset = 0;
        for c in &self.columns {
            let width = match &c.data {
                ColumnData::Int(v) => {
                    for (r, x) in v.iter().enumerate() {
                        out[r * size + offset..][..8].copy_from_slice(&x.to_le_bytes());
                    }
                    8
                }
                ColumnData::Float(v) => {
                    for (r, x) in v.iter().enumerate() {
                        out[r * size + offset..][..8].copy_from_slice(&x.to_le_bytes());
                    }
                    8
                }
                ColumnData::Text { width, values } => {
                    for (r, x) in values.iter().enumerate() {
                        let n = x.len().min(*width);
                        out[r * size + offset..][..n].copy_from_slice(&x[..n]);
                    }
                    *width
                }
            };
            offset += width;
        }
        out
    }
}

fn infer(cells: &[Option<&Json>]) -> ColumnData {
    let complete = cells.iter().all(Option::is_some);
    let present: Vec<&Json> = cells.iter().flatten().copied().collect();
    let all = |f: fn(&Json) -> bool| !present.is_empty() && present.iter().all(|v| f(v));
    if complete && all(|v| matches!(v, Json::Bool(_))) {
        let values = present
            .iter()
            .map(|v| v.python_str().into_bytes())
            .collect();
        return ColumnData::Text { width: 50, values };
    }
    if complete && all(|v| matches!(v, Json::Int(_))) {
        let values = present
            .iter()
            .map(|v| match v {
                Json::Int(i) => *i,
                _ => unreachable!("checked"),
            })
            .collect();
        return ColumnData::Int(values);
    }
    if all(|v| matches!(v, Json::Int(_) | Json::Float(_))) {
        let values = cells
            .iter()
            .map(|c| c.and_then(Json::as_f64).unwrap_or(f64::NAN))
            .collect();
        return ColumnData::Float(values);
    }
    let text: Vec<Option<String>> = cells.iter().map(|c| c.map(Json::python_str)).collect();
    let width = text
        .iter()
        .map(|t| t.as_deref().map_or(3, |s| s.chars().count())) // a gap prints as "nan"
        .max()
        .unwrap_or(0)
        .max(10);
    let values = text
        .into_iter()
        .map(|t| t.map(String::into_bytes).unwrap_or_default())
        .collect();
    ColumnData::Text { width, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_pandas() {
        let rows: Vec<Vec<(String, Json)>> = [
            r#"{"a": 1, "b": 1, "c": "x", "d": true, "e": "转移特性[1/2]"}"#,
            r#"{"a": 2, "b": 2.5, "d": false, "e": "y"}"#,
            r#"{"a": 3, "c": "yy", "d": true, "e": 1}"#,
        ]
        .iter()
        .map(|t| match Json::parse(t.as_bytes()).unwrap() {
            Json::Object(m) => m,
            _ => unreachable!(),
        })
        .collect();
        let t = StepTable::from_rows(&rows);
        assert_eq!(t.column_names(), ["a", "b", "c", "d", "e"]);
        assert_eq!(t.columns[0].data, ColumnData::Int(vec![1, 2, 3]));
        match &t.columns[1].data {
            ColumnData::Float(v) => assert!(v[0] == 1.0 && v[1] == 2.5 && v[2].is_nan()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.columns[2].data,
            ColumnData::Text {
                width: 10,
                values: vec![b"x".to_vec(), vec![], b"yy".to_vec()]
            }
        );
        assert!(matches!(
            t.columns[3].data,
            ColumnData::Text { width: 50, .. }
        ));
        // width counts characters, storage is bytes: the Chinese text is cut at 10 bytes
        let bytes = t.to_bytes();
        let size = t.type_descriptor().size();
        assert_eq!(size, 8 + 8 + 10 + 50 + 10);
        assert_eq!(&bytes[size - 10..size], &"转移特性[1/2]".as_bytes()[..10]);
        assert_eq!(&bytes[3 * size - 10..3 * size], b"1\0\0\0\0\0\0\0\0\0");
        assert_eq!(&bytes[2 * size + 26..][..4], b"True");
    }
}
