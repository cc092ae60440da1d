//! The records that flow through eddy, and the symbol encoding that interns
//! ticker symbols to integers at the source.
//!
//! A symbol is `[A-Z0-9]{1,12}` (WORKLOAD.md). Such a string fits losslessly in a
//! `u64` as base-37 digits (0 is padding), most significant character first, so
//! the integer order is the string order and every worker or process derives the
//! same id with no shared table. Hot loops hash and compare plain integers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A ticker symbol interned as a base-37 integer (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Symbol(pub u64);

const SYMBOL_MAX_LEN: usize = 12;

fn symbol_digit(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u64 + 1),
        b'A'..=b'Z' => Some((b - b'A') as u64 + 11),
        _ => None,
    }
}

impl Symbol {
    /// Interns a symbol; `None` unless it matches `[A-Z0-9]{1,12}`.
    pub fn parse(text: &[u8]) -> Option<Symbol> {
        if text.is_empty() || text.len() > SYMBOL_MAX_LEN {
            return None;
        }
        let mut code = 0u64;
        for i in 0..SYMBOL_MAX_LEN {
            let digit = match text.get(i) {
                Some(&b) => symbol_digit(b)?,
                None => 0,
            };
            code = code * 37 + digit;
        }
        Some(Symbol(code))
    }

    /// The symbol's text, e.g. `SYM004`.
    pub fn text(self) -> String {
        self.with_text(str::to_owned)
    }

    /// Calls `f` with the symbol's text. Result files write a symbol on
    /// every row: the text comes from a small per-thread table of the
    /// symbols spelled out lately (spelling one out digit by digit on every
    /// row was 5 % of a replay's instructions; allocating it, 2 % of its time).
    pub fn with_text<R>(self, f: impl FnOnce(&str) -> R) -> R {
        SPELLED.with(|table| match table.try_borrow_mut() {
            Ok(mut table) => {
                if table.len() >= SPELLED_KEPT && !table.contains_key(&self.0) {
                    table.clear();
                }
                f(table
                    .entry(self.0)
                    .or_insert_with(|| self.spell_out().into()))
            }
            // Called again from within `f`: spelled out afresh.
            Err(_) => f(&self.spell_out()),
        })
    }

    fn spell_out(self) -> String {
        let mut digits = [0u8; SYMBOL_MAX_LEN];
        let mut code = self.0;
        for slot in digits.iter_mut().rev() {
            *slot = (code % 37) as u8;
            code /= 37;
        }
        digits
            .iter()
            .take_while(|&&d| d != 0)
            .map(|&d| match d {
                1..=10 => (b'0' + d - 1) as char,
                _ => (b'A' + d - 11) as char,
            })
            .collect()
    }
}

/// The most symbols a thread keeps spelled out; past it, the table starts afresh.
const SPELLED_KEPT: usize = 4_096;

thread_local! {
    static SPELLED: std::cell::RefCell<rustc_hash::FxHashMap<u64, Box<str>>> =
        std::cell::RefCell::default();
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| f.write_str(text))
    }
}

/// A row's symbol field as its text, both ways (`#[serde(with = "symbol_text")]`):
/// result files carry `SYM004`, not the integer, and the row type's serde
/// derive describes the column as text (the SQL sinks read it from there).
pub mod symbol_text {
    use super::Symbol;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(symbol: &Symbol, s: S) -> Result<S::Ok, S::Error> {
        symbol.with_text(|text| s.serialize_str(text))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Symbol, D::Error> {
        let text = String::deserialize(d)?;
        Symbol::parse(text.as_bytes())
            .ok_or_else(|| D::Error::custom(format!("not a symbol: {text:?}")))
    }
}

/// One trade of the market stream (`ts_ms,symbol,price,size`).
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct Trade {
    pub ts_ms: u64,
    /// Arrival sequence number: breaks `ts_ms` ties (file: data row index).
    pub seq: u64,
    pub symbol: Symbol,
    pub price: f64,
    pub size: u64,
}

/// The kind of a user interaction.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum InteractionKind {
    View,
    Click,
    Purchase,
}

impl InteractionKind {
    pub fn parse(text: &[u8]) -> Option<InteractionKind> {
        match text {
            b"view" => Some(InteractionKind::View),
            b"click" => Some(InteractionKind::Click),
            b"purchase" => Some(InteractionKind::Purchase),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InteractionKind::View => "view",
            InteractionKind::Click => "click",
            InteractionKind::Purchase => "purchase",
        }
    }
}

/// One record of the interaction stream (`ts_ms,user_id,item_id,interaction`).
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct Interaction {
    pub ts_ms: u64,
    pub seq: u64,
    pub user: u64,
    pub item: u64,
    pub kind: InteractionKind,
}

/// What every source record offers the event-time machinery.
pub trait Event: Clone + Send + Serialize + serde::de::DeserializeOwned + 'static {
    /// The input's name in reports and file names (`trades`, `interactions`).
    const STREAM: &'static str;
    /// The header line of the input's CSV format.
    const CSV_HEADER: &'static str;
    fn ts_ms(&self) -> u64;
    fn seq(&self) -> u64;
    /// The record as one line of its CSV format (no newline).
    fn to_csv_line(&self) -> String;
}

impl Event for Trade {
    const STREAM: &'static str = "trades";
    const CSV_HEADER: &'static str = "ts_ms,symbol,price,size";
    fn ts_ms(&self) -> u64 {
        self.ts_ms
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn to_csv_line(&self) -> String {
        format!(
            "{},{},{},{}",
            self.ts_ms, self.symbol, self.price, self.size
        )
    }
}

impl Event for Interaction {
    const STREAM: &'static str = "interactions";
    const CSV_HEADER: &'static str = "ts_ms,user_id,item_id,interaction";
    fn ts_ms(&self) -> u64 {
        self.ts_ms
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn to_csv_line(&self) -> String {
        format!(
            "{},{},{},{}",
            self.ts_ms,
            self.user,
            self.item,
            self.kind.as_str()
        )
    }
}

/// The stream a recorded file holds, told by its header line (line 1 of
/// `path`): `trades` or `interactions`; anything else is one clear error.
pub fn stream_of_header(path: &std::path::Path, header: &str) -> anyhow::Result<&'static str> {
    match header.trim() {
        h if h == Trade::CSV_HEADER => Ok(Trade::STREAM),
        h if h == Interaction::CSV_HEADER => Ok(Interaction::STREAM),
        other => anyhow::bail!(
            "{}: line 1 must be the header of trades.csv or interactions.csv, found `{other}`",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip_and_keep_string_order() {
        let names = [
            "A",
            "AB",
            "B",
            "SYM000",
            "SYM019",
            "Z9",
            "ZZZZZZZZZZZZ",
            "0",
        ];
        for n in names {
            assert_eq!(Symbol::parse(n.as_bytes()).unwrap().text(), n);
        }
        let mut by_code: Vec<_> = names
            .iter()
            .map(|n| Symbol::parse(n.as_bytes()).unwrap())
            .collect();
        by_code.sort();
        let mut by_text: Vec<_> = names.to_vec();
        by_text.sort();
        assert_eq!(
            by_code.iter().map(|s| s.text()).collect::<Vec<_>>(),
            by_text
        );
    }

    #[test]
    fn spelled_symbols_stay_right_when_more_than_the_table_holds() {
        // More symbols than a thread keeps: the table starts afresh, and
        // each text must still be its own symbol's.
        let names: Vec<String> = (0..SPELLED_KEPT + 100)
            .map(|i| format!("S{i:05}"))
            .collect();
        for round in 0..2 {
            for n in &names {
                let sym = Symbol::parse(n.as_bytes()).unwrap();
                assert_eq!(sym.text(), *n, "round {round}");
            }
        }
        // Called from within its own callback, it spells out afresh.
        let a = Symbol::parse(b"AAPL").unwrap();
        let b = Symbol::parse(b"MSFT").unwrap();
        let both = a.with_text(|x| b.with_text(|y| format!("{x}/{y}")));
        assert_eq!(both, "AAPL/MSFT");
    }

    #[test]
    fn bad_symbols_are_refused() {
        for bad in ["", "abc", "SYM-1", "ABCDEFGHIJKLM", "A B"] {
            assert!(Symbol::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
