//! Tokens: read from a file an operator keeps private, compared in constant
//! time so that a sender cannot learn a token byte by byte from how long
//! its refusal takes.

use anyhow::{bail, Context};
use std::path::Path;
use subtle::ConstantTimeEq;

/// The token in `path`: its first line, trimmed; an empty one, or one of
/// several words, is refused.
pub fn read_token(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() || token.split_whitespace().count() != 1 {
        bail!(
            "the token file {} must hold one word on its first line",
            path.display()
        );
    }
    Ok(token.as_bytes().to_vec())
}

/// Whether `presented` is `expected`, in time independent of where they differ.
pub fn matches(presented: &[u8], expected: &[u8]) -> bool {
    bool::from(presented.ct_eq(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_holds_one_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-Token \nsecond line\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), b"s3cret-Token");
        for bad in ["", "\n", "two words\n"] {
            std::fs::write(&path, bad).unwrap();
            let e = read_token(&path).unwrap_err().to_string();
            assert!(e.contains("one word on its first line"), "{e}");
        }
        let e = read_token(&dir.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("cannot read the token file"), "{e}");
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(matches(b"abc", b"abc"));
        assert!(!matches(b"abd", b"abc"));
        assert!(!matches(b"ab", b"abc"));
        assert!(!matches(b"", b"abc"));
    }
}
