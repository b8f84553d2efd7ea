//! Bounded YAML for files people edit (intents, dialogs): aliases may
//! repeat an anchor, so a small file can expand into gigabytes. Before a
//! file is deserialized, `check_expansion` walks it with a visitor that
//! counts every node and byte as serde_yaml expands aliases, and stops at a
//! budget. Written by hand: serde_yaml only bounds the number of alias
//! jumps, not what each jump expands to.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// What an expanded document may hold: nodes and bytes of scalars.
pub const MAX_NODES: usize = 2_000_000;

/// Bytes of scalars a document may expand to: this many times its own size,
/// plus a margin.
pub const EXPANSION_FACTOR: usize = 10;

/// The document too large once its aliases are expanded, in Russian.
#[derive(Debug)]
pub struct TooLarge;

struct Budget {
    nodes: Cell<usize>,
    bytes: Cell<usize>,
    max_bytes: usize,
}

impl Budget {
    fn take<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        self.nodes.set(self.nodes.get() + 1);
        self.bytes.set(self.bytes.get() + bytes);
        if self.nodes.get() > MAX_NODES || self.bytes.get() > self.max_bytes {
            return Err(E::custom(TOO_LARGE));
        }
        Ok(())
    }
}

const TOO_LARGE: &str = "the document expands beyond its limit (aliases repeat too much)";

struct Walk<'a>(&'a Budget);

impl<'de> de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.0.take(1)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.0.take(8)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.0.take(8)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.0.take(8)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.take(v.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.take(1)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.take(1)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        self.0.take(1)?;
        while a.next_element_seed(Walk(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        self.0.take(1)?;
        while a.next_key_seed(Walk(self.0))?.is_some() {
            a.next_value_seed(Walk(self.0))?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, a: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        let (_, v) = a.variant_seed(Walk(self.0))?;
        v.newtype_variant_seed(Walk(self.0))
    }
}

/// Whether `text` stays within the budget once its aliases are expanded.
/// Syntax errors are left to the real parse, which reports them with lines.
pub fn check_expansion(text: &str) -> Result<(), TooLarge> {
    let budget = Budget {
        nodes: Cell::new(0),
        bytes: Cell::new(0),
        max_bytes: text.len() * EXPANSION_FACTOR + (1 << 20),
    };
    for doc in serde_yaml::Deserializer::from_str(text) {
        if let Err(e) = de::DeserializeSeed::deserialize(Walk(&budget), doc) {
            if e.to_string().contains(TOO_LARGE) || e.to_string().contains("repetition limit") {
                return Err(TooLarge);
            }
            return Ok(());
        }
    }
    Ok(())
}

/// Problems listed at most when a file set fails to load; the rest are counted.
pub const MAX_PROBLEMS: usize = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_that_explode_are_refused_and_ordinary_files_pass() {
        let mut bomb = String::from("a: &a [\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(bomb.len() < 2000);
        assert!(check_expansion(&bomb).is_err());
        let ok = "intents:\n  - id: x\n    examples: [a, b, c]\nbase: &b {k: 1}\nuse: *b\n";
        assert!(check_expansion(ok).is_ok());
        assert!(
            check_expansion("key: [unclosed").is_ok(),
            "syntax is the parser's job"
        );
    }
}
