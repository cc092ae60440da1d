//! Parsing of the WORKLOAD.md line formats. Errors name the field and the value.

use crate::record::{Interaction, InteractionKind, Symbol, Trade};
use csv::ByteRecord;

/// Reads one record of a stream from a CSV row.
pub trait ParseRow: Sized {
    fn parse_row<F: Fields + ?Sized>(row: &F, seq: u64) -> Result<Self, String>;
}

/// The fields of one input row, however it was split.
pub trait Fields {
    /// How many fields the row has.
    fn count(&self) -> usize;
    /// Field `index` (empty past the last).
    fn field(&self, index: usize) -> &[u8];
}

impl Fields for ByteRecord {
    fn count(&self) -> usize {
        self.len()
    }
    fn field(&self, index: usize) -> &[u8] {
        self.get(index).unwrap_or_default()
    }
}

/// Fields read in place from a row's bytes, split at commas (the formats
/// have no quoting): nothing is copied. Both formats have four fields; a
/// row with more is counted (and refused by the parser), not kept.
pub struct CommaFields<'a> {
    fields: [&'a [u8]; 4],
    count: usize,
}

impl<'a> CommaFields<'a> {
    pub fn split(row: &'a [u8]) -> Self {
        let mut fields: [&[u8]; 4] = [&[]; 4];
        let mut count = 0;
        for field in row.split(|b| *b == b',') {
            if let Some(slot) = fields.get_mut(count) {
                *slot = field;
            }
            count += 1;
        }
        CommaFields { fields, count }
    }
}

impl Fields for CommaFields<'_> {
    fn count(&self) -> usize {
        self.count
    }
    fn field(&self, index: usize) -> &[u8] {
        self.fields.get(index).copied().unwrap_or_default()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn field<F: Fields + ?Sized>(row: &F, index: usize, expected: usize) -> Result<&[u8], String> {
    if row.count() != expected {
        return Err(format!("expected {expected} fields, found {}", row.count()));
    }
    Ok(row.field(index))
}

/// A non-negative integer field.
pub fn parse_u64(bytes: &[u8], name: &str) -> Result<u64, String> {
    // Fast path (the hot loop of a replay): ASCII digits, parsed eight at a
    // time by `atoi_simd`; anything else (a sign, Unicode spaces, too many
    // digits) goes the slow way, which also words the error.
    if let Ok(n) = atoi_simd::parse_pos::<u64, false>(bytes.trim_ascii()) {
        return Ok(n);
    }
    let s = std::str::from_utf8(bytes).map_err(|_| format!("field `{name}` is not UTF-8"))?;
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("field `{name}`: `{s}` is not a non-negative integer"))
}

/// A floating-point field, trimmed of whitespace. Fast path: ASCII
/// whitespace trimmed on the bytes (`str::trim` walks Unicode characters: it
/// was a third of parsing a trade) and the digits parsed from the bytes by
/// `fast-float2` (the algorithm `str::parse` uses, without first checking
/// that the bytes are UTF-8, a quarter of what remained); other whitespace
/// goes the slow way, through `str`.
fn parse_f64(bytes: &[u8]) -> Option<f64> {
    fast_float2::parse::<f64, _>(bytes.trim_ascii())
        .ok()
        .or_else(|| {
            let s = std::str::from_utf8(bytes).ok()?;
            s.trim().parse::<f64>().ok()
        })
}

/// The largest event time accepted: the last millisecond of the year 9999.
/// Larger values are errors in the data, and would overflow window arithmetic.
pub const MAX_TS_MS: u64 = 253_402_300_799_999;

/// An event time field: a non-negative integer no larger than [`MAX_TS_MS`].
pub fn parse_ts(bytes: &[u8]) -> Result<u64, String> {
    let ts = parse_u64(bytes, "ts_ms")?;
    if ts > MAX_TS_MS {
        return Err(format!("field `ts_ms`: `{ts}` is after the year 9999"));
    }
    Ok(ts)
}

/// The `ts_ms` of a row, without looking at the rest (for rows another worker owns).
pub fn row_ts<F: Fields + ?Sized>(row: &F) -> Option<u64> {
    if row.count() == 0 {
        return None;
    }
    parse_ts(row.field(0)).ok()
}

impl ParseRow for Trade {
    fn parse_row<F: Fields + ?Sized>(row: &F, seq: u64) -> Result<Trade, String> {
        let ts_ms = parse_ts(field(row, 0, 4)?)?;
        let symbol_text = field(row, 1, 4)?;
        let symbol = Symbol::parse(symbol_text).ok_or_else(|| {
            format!(
                "field `symbol`: `{}` is not [A-Z0-9]{{1,12}}",
                text(symbol_text)
            )
        })?;
        let price_text = field(row, 2, 4)?;
        let price = parse_f64(price_text)
            .filter(|p| p.is_finite() && *p > 0.0)
            .ok_or_else(|| {
                format!(
                    "field `price`: `{}` is not a positive number",
                    text(price_text)
                )
            })?;
        let size = parse_u64(field(row, 3, 4)?, "size")?;
        if size == 0 {
            return Err("field `size`: `0` is not a positive integer".into());
        }
        Ok(Trade {
            ts_ms,
            seq,
            symbol,
            price,
            size,
        })
    }
}

impl ParseRow for Interaction {
    fn parse_row<F: Fields + ?Sized>(row: &F, seq: u64) -> Result<Interaction, String> {
        let ts_ms = parse_ts(field(row, 0, 4)?)?;
        let user = parse_u64(field(row, 1, 4)?, "user_id")?;
        let item = parse_u64(field(row, 2, 4)?, "item_id")?;
        let kind_text = field(row, 3, 4)?;
        let kind = InteractionKind::parse(kind_text).ok_or_else(|| {
            format!(
                "field `interaction`: `{}` is not view, click or purchase",
                text(kind_text)
            )
        })?;
        Ok(Interaction {
            ts_ms,
            seq,
            user,
            item,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/csv_rows: fields are trimmed of any whitespace
    /// `str::trim` removes (form feeds, Unicode spaces), on both paths.
    #[test]
    fn fields_are_trimmed_of_whitespace_on_both_paths() {
        for size in ["\x0c\x0c\x0c80", " 80\t", "\u{2003}80"] {
            let line = format!("0,A,8,{size}");
            let fast = Trade::parse_row(&CommaFields::split(line.as_bytes()), 0).unwrap();
            assert_eq!(fast, Trade::parse_row(&row(&line), 0).unwrap());
            assert_eq!((fast.size, fast.price), (80, 8.0));
        }
    }

    fn row(s: &str) -> ByteRecord {
        ByteRecord::from(s.split(',').collect::<Vec<_>>())
    }

    proptest::proptest! {
        /// The fast path agrees with the standard parser, values and errors alike.
        #[test]
        fn integers_parse_as_the_standard_parser_does(text in "[ +0-9a]{0,22}|[0-9]{18,21}") {
            let standard = text.trim().parse::<u64>().ok();
            proptest::prop_assert_eq!(parse_u64(text.as_bytes(), "n").ok(), standard);
        }

        /// Floats too, Unicode whitespace (NBSP, ideographic space) included.
        #[test]
        fn floats_parse_as_the_standard_parser_does(
            text in "[ \t\u{a0}\u{3000}]{0,2}[-+]?[0-9]{0,4}[.]?[0-9]{0,4}(e[0-9])?[ \t\u{a0}x]{0,2}"
        ) {
            let standard = text.trim().parse::<f64>().ok();
            proptest::prop_assert_eq!(parse_f64(text.as_bytes()), standard);
        }

        /// Long mantissas and exponents (rounding), infinities and NaN by
        /// every spelling the standard parser takes, and any double's own text.
        #[test]
        fn long_and_special_floats_parse_as_the_standard_parser_does(
            text in "[-+]?([0-9]{1,25}[.]?[0-9]{0,25}([eE][-+]?[0-9]{1,3})?|[iI][nN][fF]|[iI]nfinity|[nN][aA][nN]|infinit)",
            bits in proptest::prelude::any::<u64>(),
        ) {
            let same = |text: &str| -> Result<(), proptest::test_runner::TestCaseError> {
                let standard = text.trim().parse::<f64>().ok();
                let ours = parse_f64(text.as_bytes());
                // NaN is not equal to itself: compare the bits.
                proptest::prop_assert_eq!(ours.map(f64::to_bits), standard.map(f64::to_bits), "{}", text);
                Ok(())
            };
            same(&text)?;
            let double = f64::from_bits(bits);
            same(&format!("{double}"))?;
            same(&format!("{double:e}"))?;
        }
    }

    #[test]
    fn good_rows_parse() {
        let t = Trade::parse_row(&row("1700000000002,SYM004,460.9788,89"), 7).unwrap();
        assert_eq!(
            (t.ts_ms, t.seq, t.symbol.text(), t.price, t.size),
            (1700000000002, 7, "SYM004".into(), 460.9788, 89)
        );
        let i = Interaction::parse_row(&row("1700000000003,197,81,click"), 1).unwrap();
        assert_eq!((i.user, i.item, i.kind), (197, 81, InteractionKind::Click));
    }

    #[test]
    fn bad_rows_name_the_field() {
        let cases = [
            ("1,SYM1,2.0", "expected 4 fields, found 3"),
            ("-5,SYM1,2.0,3", "`ts_ms`"),
            ("1,,2.0,3", "`symbol`"),
            ("1,sym,2.0,3", "`symbol`"),
            ("1,SYM1,abc,3", "`price`"),
            ("1,SYM1,-2.0,3", "`price`"),
            ("1,SYM1,NaN,3", "`price`"),
            ("1,SYM1,2.0,0", "`size`"),
            ("1,SYM1,2.0,-3", "`size`"),
            ("99999999999999999,SYM1,2.0,3", "year 9999"),
        ];
        for (line, needle) in cases {
            let err = Trade::parse_row(&row(line), 0).unwrap_err();
            assert!(err.contains(needle), "{line}: {err}");
        }
        let err = Interaction::parse_row(&row("1,2,3,like"), 0).unwrap_err();
        assert!(err.contains("`interaction`"), "{err}");
        let err = Interaction::parse_row(&row("1,x,3,view"), 0).unwrap_err();
        assert!(err.contains("`user_id`"), "{err}");
    }
}
