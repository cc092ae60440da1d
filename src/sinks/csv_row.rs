//! A result row as one CSV line, written straight from its serde fields:
//! integers by `itoa`, floats by `zmij` (the shortest text that reads back as
//! the same double, as `ryu` gives, about twice as fast), text quoted only
//! where CSV needs it (a comma, a quote, CR or LF; quotes doubled), exactly as
//! the `csv` crate's default writer quotes. `None` is an empty field, a unit
//! enum variant its name.
//!
//! Why not `csv::Writer::serialize`: per-record outputs (`ewma.csv`, one row
//! per trade) made writing results a fifth of a 1-worker run, most of it the
//! `csv` writer scanning and copying every number's bytes through its own
//! buffer, which a number never needs. Headers and reading stay with `csv`.

use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// A row that is not a flat struct of plain values.
#[derive(Debug)]
pub struct RowError(String);

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowError {}

impl ser::Error for RowError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RowError(msg.to_string())
    }
}

/// Appends `row` to `out` as one CSV line ending in `\n`. On an error, `out`
/// is left as it was.
pub fn append_row<T: Serialize + ?Sized>(row: &T, out: &mut Vec<u8>) -> Result<(), RowError> {
    let start = out.len();
    let mut line = Line { out, fields: 0 };
    match row.serialize(&mut line) {
        Ok(()) => {
            out.push(b'\n');
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// The line being written and how many fields it has so far.
struct Line<'a> {
    out: &'a mut Vec<u8>,
    fields: usize,
}

impl Line<'_> {
    /// Starts a field: a comma before every field but the first.
    fn field(&mut self) {
        if self.fields > 0 {
            self.out.push(b',');
        }
        self.fields += 1;
    }

    fn integer(&mut self, v: impl itoa::Integer) {
        self.field();
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn float(&mut self, v: impl zmij::Float) {
        self.field();
        self.out
            .extend_from_slice(zmij::Buffer::new().format(v).as_bytes());
    }

    fn text(&mut self, v: &[u8]) {
        self.field();
        if v.iter().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
            self.out.push(b'"');
            for &b in v {
                if b == b'"' {
                    self.out.push(b'"');
                }
                self.out.push(b);
            }
            self.out.push(b'"');
        } else {
            self.out.extend_from_slice(v);
        }
    }

    fn not_flat(what: &str) -> RowError {
        RowError(format!(
            "a result row is a flat struct of plain values, not {what}"
        ))
    }
}

impl<'a, 'b> ser::Serializer for &'a mut Line<'b> {
    type Ok = ();
    type Error = RowError;
    type SerializeSeq = Impossible<(), RowError>;
    type SerializeTuple = Impossible<(), RowError>;
    type SerializeTupleStruct = Impossible<(), RowError>;
    type SerializeTupleVariant = Impossible<(), RowError>;
    type SerializeMap = Impossible<(), RowError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), RowError>;

    fn serialize_bool(self, v: bool) -> Result<(), RowError> {
        self.text(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), RowError> {
        self.integer(v);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), RowError> {
        self.integer(v);
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), RowError> {
        self.integer(v);
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), RowError> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), RowError> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), RowError> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), RowError> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), RowError> {
        self.integer(v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), RowError> {
        self.float(v);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), RowError> {
        self.float(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), RowError> {
        self.text(v.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), RowError> {
        self.text(v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), RowError> {
        self.text(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), RowError> {
        self.field();
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), RowError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), RowError> {
        self.field();
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), RowError> {
        self.field();
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), RowError> {
        self.text(variant.as_bytes());
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RowError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RowError> {
        Err(Line::not_flat("an enum variant with data"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, RowError> {
        Err(Line::not_flat("a sequence"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RowError> {
        Err(Line::not_flat("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, RowError> {
        Err(Line::not_flat("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RowError> {
        Err(Line::not_flat("an enum variant with data"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RowError> {
        Err(Line::not_flat("a map"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, RowError> {
        if self.fields > 0 {
            return Err(Line::not_flat("a struct inside a row"));
        }
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RowError> {
        Err(Line::not_flat("an enum variant with data"))
    }
}

impl<'a, 'b> ser::SerializeStruct for &'a mut Line<'b> {
    type Ok = ();
    type Error = RowError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), RowError> {
        let before = self.fields;
        value.serialize(&mut **self)?;
        if self.fields != before + 1 {
            return Err(RowError(format!(
                "field {key} is not one plain value (a nested struct or a flattened field)"
            )));
        }
        Ok(())
    }

    fn end(self) -> Result<(), RowError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize, Clone)]
    enum Side {
        Buy,
    }

    #[derive(Serialize, Clone)]
    struct Everything {
        text: String,
        count: u64,
        delta: i32,
        price: f64,
        missing: Option<f64>,
        present: Option<u32>,
        flag: bool,
        side: Side,
        letter: char,
    }

    /// What the `csv` crate's own writer makes of the same row.
    fn by_csv_crate<T: Serialize>(row: &T) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.serialize(row).unwrap();
        w.into_inner().unwrap()
    }

    fn by_us<T: Serialize>(row: &T) -> Vec<u8> {
        let mut out = Vec::new();
        append_row(row, &mut out).unwrap();
        out
    }

    #[test]
    fn rows_are_written_as_the_csv_crate_writes_them() {
        let texts = [
            "plain",
            "",
            "with,comma",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            " spaced ",
            "nön-ascii ✓",
        ];
        let prices = [
            0.0,
            -0.0,
            1.0,
            226.1507,
            0.1 + 0.2,
            1e-7,
            123456789.125,
            5e-324,
        ];
        for (i, text) in texts.iter().enumerate() {
            for &price in &prices {
                let row = Everything {
                    text: text.to_string(),
                    count: u64::MAX - i as u64,
                    delta: -(i as i32),
                    price,
                    missing: None,
                    present: Some(i as u32),
                    flag: i % 2 == 0,
                    side: Side::Buy,
                    letter: ',',
                };
                let ours = by_us(&row);
                // Floats may differ in form (exponents), never in value.
                let theirs = by_csv_crate(&row);
                let read = |bytes: &[u8]| -> Vec<String> {
                    let mut r = csv::ReaderBuilder::new()
                        .has_headers(false)
                        .from_reader(bytes);
                    r.records()
                        .next()
                        .unwrap()
                        .unwrap()
                        .iter()
                        .map(String::from)
                        .collect()
                };
                let (a, b) = (read(&ours), read(&theirs));
                assert_eq!(a.len(), 9);
                for (k, (x, y)) in a.iter().zip(&b).enumerate() {
                    if k == 3 {
                        assert_eq!(x.parse::<f64>().unwrap().to_bits(), price.to_bits());
                    } else {
                        assert_eq!(x, y, "field {k} of {text:?}");
                    }
                }
                // Where the price reads the same, so do the lines, byte for byte.
                if a[3] == b[3] {
                    assert_eq!(ours, theirs, "{text:?} {price}");
                }
            }
        }
    }

    #[test]
    fn non_finite_floats_read_as_what_they_are() {
        #[derive(Serialize)]
        struct R {
            a: f64,
            b: f64,
            c: f64,
        }
        let line = by_us(&R {
            a: f64::NAN,
            b: f64::INFINITY,
            c: f64::NEG_INFINITY,
        });
        assert_eq!(line, b"NaN,inf,-inf\n");
    }

    #[test]
    fn nested_values_are_refused_and_leave_nothing_behind() {
        #[derive(Serialize)]
        struct Inner {
            x: u8,
        }
        #[derive(Serialize)]
        struct Nested {
            a: u8,
            inner: Inner,
        }
        #[derive(Serialize)]
        struct Listy {
            a: Vec<u8>,
        }
        let mut out = b"kept\n".to_vec();
        let e = append_row(
            &Nested {
                a: 1,
                inner: Inner { x: 2 },
            },
            &mut out,
        )
        .unwrap_err();
        assert!(e.to_string().contains("struct inside a row"), "{e}");
        let e = append_row(&Listy { a: vec![1] }, &mut out).unwrap_err();
        assert!(e.to_string().contains("sequence"), "{e}");
        assert_eq!(out, b"kept\n");
    }
}
