//! The rows of a result file as typed values: each CSV field parsed as its
//! column's type (a float with every bit, as `f64` reads back what the CSV
//! writer printed; an empty field of an `Option` column is NULL), so the
//! stores bind values instead of asking the database to parse text.

use super::{DbError, Table};
use crate::sinks::{Column, ColumnType};
use anyhow::{anyhow, Context};

/// One field of a row, typed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Field<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Boolean(bool),
    Text(&'a str),
}

impl<'a> Field<'a> {
    /// Parses `field` as `column`'s type.
    pub fn parse(field: &'a [u8], column: &Column) -> anyhow::Result<Field<'a>> {
        let text = std::str::from_utf8(field)?;
        if text.is_empty() && column.nullable {
            return Ok(Field::Null);
        }
        let bad = || anyhow!("column {}: {text:?} is not a {:?}", column.name, column.ty);
        Ok(match column.ty {
            ColumnType::Integer => Field::Integer(text.parse().map_err(|_| bad())?),
            ColumnType::Real => Field::Real(text.parse().map_err(|_| bad())?),
            ColumnType::Boolean => Field::Boolean(text.parse().map_err(|_| bad())?),
            ColumnType::Text => Field::Text(text),
        })
    }
}

/// One CSV line of a table's file, its fields parsed on demand (a store
/// takes them one by one: no allocation per row).
pub struct Row<'r> {
    record: &'r csv::ByteRecord,
    table: &'r Table,
}

impl<'r> Row<'r> {
    /// The number of fields.
    pub fn len(&self) -> usize {
        self.table.columns.len()
    }

    /// The typed fields in column order; a field that does not parse is the
    /// run's error, naming the table and column.
    pub fn fields(&self) -> impl Iterator<Item = Result<Field<'r>, DbError>> + 'r {
        let table = self.table;
        self.record
            .iter()
            .zip(&table.columns)
            .map(move |(field, column)| {
                Field::parse(field, column)
                    .with_context(|| format!("table {}", table.name))
                    .map_err(DbError::Fatal)
            })
    }
}

/// Calls `each` with every CSV line in `bytes` (whole lines without header,
/// as the committed part of a result file holds).
pub fn for_each_row(
    table: &Table,
    bytes: &[u8],
    mut each: impl FnMut(Row) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| DbError::Fatal(anyhow!("table {}: {e}", table.name)))?
    {
        each(Row {
            record: &record,
            table,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &'static str, ty: ColumnType, nullable: bool) -> Column {
        Column { name, ty, nullable }
    }

    #[test]
    fn fields_parse_as_their_columns_type() {
        let real = column("x", ColumnType::Real, false);
        let x = 0.1 + 0.2;
        let printed = x.to_string();
        assert_eq!(
            Field::parse(printed.as_bytes(), &real).unwrap(),
            Field::Real(x)
        );
        let int = column("n", ColumnType::Integer, true);
        assert_eq!(Field::parse(b"", &int).unwrap(), Field::Null);
        assert_eq!(Field::parse(b"-7", &int).unwrap(), Field::Integer(-7));
        let flag = column("b", ColumnType::Boolean, false);
        assert_eq!(Field::parse(b"true", &flag).unwrap(), Field::Boolean(true));
        let text = column("s", ColumnType::Text, false);
        assert_eq!(Field::parse(b"", &text).unwrap(), Field::Text(""));
        let err = Field::parse(b"1.5", &int).unwrap_err().to_string();
        assert!(err.contains("column n") && err.contains("1.5"), "{err}");
    }

    #[test]
    fn every_line_is_a_row_with_quoted_fields_unquoted() {
        let table = Table {
            name: "t".into(),
            file: "t.csv".into(),
            columns: vec![
                column("k", ColumnType::Text, false),
                column("v", ColumnType::Integer, false),
            ],
            identity: vec![],
            time: None,
        };
        let mut rows = Vec::new();
        let result = for_each_row(&table, b"a,1\n\"b,c\",2\n", |row| {
            let fields: Result<Vec<Field>, DbError> = row.fields().collect();
            rows.push(format!("{:?}", fields?));
            Ok(())
        });
        assert!(result.is_ok());
        assert_eq!(
            rows,
            ["[Text(\"a\"), Integer(1)]", "[Text(\"b,c\"), Integer(2)]"]
        );
        let bad = for_each_row(&table, b"a,x\n", |row| {
            row.fields().try_for_each(|f| f.map(drop))
        });
        let Err(DbError::Fatal(e)) = bad else {
            panic!("a bad field is fatal")
        };
        assert!(format!("{e:#}").contains("table t: column v"), "{e:#}");
    }
}
