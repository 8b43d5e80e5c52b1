//! Code-point trie with greedy maximum-forward matching.
//!
//! One trie holds every token; each node records the token ending there twice, once counting
//! special tokens and once not, so the same walk serves `allow_special` on and off. Transitions
//! out of the root for BMP characters use a dense table (the hot first step); all other
//! transitions live in one open-addressing hash table keyed by (node, code point).

const NONE: u32 = u32::MAX;
const BMP: usize = 0x1_0000;

#[derive(Clone, Copy)]
struct Node {
    /// Token id ending here counting special tokens, or NONE.
    token_all: u32,
    /// Token id ending here ignoring special tokens, or NONE.
    token_plain: u32,
    /// Bit `c % 64` is set for every child character `c`: most failed steps end on this
    /// check instead of a hash lookup; 0 means a leaf.
    child_bits: u64,
}

#[inline(always)]
fn char_bit(c: u32) -> u64 {
    1u64 << (c & 63)
}

pub(crate) struct Trie {
    nodes: Vec<Node>,
    root_bmp: Vec<u32>,
    edges: EdgeTable,
}

/// Result of matching at one position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Match {
    /// Token id and its byte length.
    Token(u32, usize),
    /// No token starts here; the unknown character has this byte length.
    Unknown(usize),
}

impl Trie {
    /// A trie of `(id, token, special)` entries.
    pub fn new<'a>(tokens: impl IntoIterator<Item = (u32, &'a str, bool)>) -> Trie {
        let tokens: Vec<(u32, &str, bool)> = tokens.into_iter().collect();
        // The dense root table only spans the BMP first characters in use, so small
        // vocabularies (toy problems, tests, fuzzing) stay cheap to build.
        let root_len = tokens
            .iter()
            .filter_map(|(_, t, _)| t.chars().next())
            .map(|c| c as usize + 1)
            .filter(|&n| n <= BMP)
            .max()
            .unwrap_or(0);
        let mut trie = Trie {
            nodes: vec![Node {
                token_all: NONE,
                token_plain: NONE,
                child_bits: 0,
            }],
            root_bmp: vec![NONE; root_len],
            edges: EdgeTable::default(),
        };
        for (id, token, special) in tokens {
            let mut node = 0u32;
            for c in token.chars() {
                node = match trie.child(node, c as u32) {
                    NONE => {
                        let new = trie.nodes.len() as u32;
                        trie.nodes.push(Node {
                            token_all: NONE,
                            token_plain: NONE,
                            child_bits: 0,
                        });
                        trie.nodes[node as usize].child_bits |= char_bit(c as u32);
                        if node == 0 && (c as usize) < trie.root_bmp.len() {
                            trie.root_bmp[c as usize] = new;
                        } else {
                            trie.edges.insert(node, c as u32, new);
                        }
                        new
                    }
                    child => child,
                };
            }
            let n = &mut trie.nodes[node as usize];
            n.token_all = id;
            if !special {
                n.token_plain = id;
            }
        }
        trie
    }

    #[inline]
    fn child(&self, node: u32, c: u32) -> u32 {
        if node == 0 && (c as usize) < self.root_bmp.len() {
            self.root_bmp[c as usize]
        } else {
            self.edges.get(node, c)
        }
    }

    #[inline]
    fn token_at(&self, node: u32, allow_special: bool) -> u32 {
        let n = &self.nodes[node as usize];
        if allow_special {
            n.token_all
        } else {
            n.token_plain
        }
    }

    /// The longest token that is a prefix of `text[pos..]` (`pos` on a char boundary, `< len`).
    #[inline(always)]
    pub fn longest_match(&self, text: &[u8], pos: usize, allow_special: bool) -> Match {
        let (c, first_len) = decode_char(text, pos);
        let mut node = self.child(0, c);
        if node == NONE {
            return Match::Unknown(first_len);
        }
        let mut best = self.token_at(node, allow_special);
        let mut p = pos + first_len;
        let mut best_end = p;
        while p < text.len() {
            let (c, len) = decode_char(text, p);
            if self.nodes[node as usize].child_bits & char_bit(c) == 0 {
                break;
            }
            node = self.edges.get(node, c);
            if node == NONE {
                break;
            }
            p += len;
            let t = self.token_at(node, allow_special);
            if t != NONE {
                best = t;
                best_end = p;
            }
        }
        if best == NONE {
            Match::Unknown(first_len)
        } else {
            Match::Token(best, best_end - pos)
        }
    }

    /// Whether some token occurrence starting at `start` ends strictly after `cut`
    /// (both char boundaries, `start < cut`).
    pub fn token_crosses(
        &self,
        text: &[u8],
        start: usize,
        cut: usize,
        allow_special: bool,
    ) -> bool {
        let mut node = 0u32;
        let mut p = start;
        while p < text.len() {
            let (c, len) = decode_char(text, p);
            node = self.child(node, c);
            if node == NONE {
                return false;
            }
            p += len;
            if p > cut && self.token_at(node, allow_special) != NONE {
                return true;
            }
            if self.nodes[node as usize].child_bits == 0 {
                return false;
            }
        }
        false
    }
}

/// Decodes the code point starting at `i` of valid UTF-8; returns it and its byte length.
#[inline(always)]
fn decode_char(b: &[u8], i: usize) -> (u32, usize) {
    let b0 = b[i] as u32;
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xE0 {
        (((b0 & 0x1F) << 6) | (b[i + 1] as u32 & 0x3F), 2)
    } else if b0 < 0xF0 {
        (
            ((b0 & 0x0F) << 12) | ((b[i + 1] as u32 & 0x3F) << 6) | (b[i + 2] as u32 & 0x3F),
            3,
        )
    } else {
        let c = ((b0 & 0x07) << 18)
            | ((b[i + 1] as u32 & 0x3F) << 12)
            | ((b[i + 2] as u32 & 0x3F) << 6)
            | (b[i + 3] as u32 & 0x3F);
        (c, 4)
    }
}

/// Open-addressing hash map (node, code point) → child node, linear probing. Key and value
/// share a slot so a probe touches one cache line.
#[derive(Default)]
struct EdgeTable {
    slots: Vec<Slot>,
    len: usize,
    shift: u32,
}

#[derive(Clone, Copy)]
struct Slot {
    key: u64,
    child: u32,
}

const EMPTY: Slot = Slot {
    key: u64::MAX,
    child: NONE,
};

impl EdgeTable {
    #[inline(always)]
    fn key(node: u32, c: u32) -> u64 {
        // Code points need 21 bits.
        (u64::from(node) << 21) | u64::from(c)
    }

    #[inline(always)]
    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn get(&self, node: u32, c: u32) -> u32 {
        if self.slots.is_empty() {
            return NONE;
        }
        let key = Self::key(node, c);
        let mask = self.slots.len() - 1;
        let mut i = self.slot(key);
        loop {
            let s = self.slots[i];
            if s.key == key {
                return s.child;
            }
            if s.key == EMPTY.key {
                return NONE;
            }
            i = (i + 1) & mask;
        }
    }

    fn insert(&mut self, node: u32, c: u32, child: u32) {
        // Load factor at most 1/2 keeps probe runs short.
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let key = Self::key(node, c);
        let mask = self.slots.len() - 1;
        let mut i = self.slot(key);
        while self.slots[i].key != EMPTY.key {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot { key, child };
        self.len += 1;
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(64);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; cap]);
        self.shift = 64 - cap.trailing_zeros();
        self.len = 0;
        for s in old.into_iter().filter(|s| s.key != EMPTY.key) {
            self.insert((s.key >> 21) as u32, (s.key & 0x1F_FFFF) as u32, s.child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(tokens: &[(&str, bool)]) -> Trie {
        Trie::new(
            tokens
                .iter()
                .enumerate()
                .map(|(id, &(t, s))| (id as u32, t, s)),
        )
    }

    #[test]
    fn picks_the_longest_prefix_and_falls_back() {
        let t = trie(&[("a", false), ("abc", false), ("ab", false), ("x😀", false)]);
        let text = "abcd".as_bytes();
        assert_eq!(t.longest_match(text, 0, false), Match::Token(1, 3));
        assert_eq!(t.longest_match(b"abd", 0, false), Match::Token(2, 2));
        assert_eq!(t.longest_match(b"ad", 0, false), Match::Token(0, 1));
        assert_eq!(t.longest_match(b"d", 0, false), Match::Unknown(1));
        // "x" starts a token but is not one itself.
        assert_eq!(
            t.longest_match("x😀".as_bytes(), 0, false),
            Match::Token(3, 5)
        );
        assert_eq!(
            t.longest_match("xy".as_bytes(), 0, false),
            Match::Unknown(1)
        );
        assert_eq!(t.longest_match("é".as_bytes(), 0, false), Match::Unknown(2));
    }

    #[test]
    fn special_tokens_only_when_allowed() {
        let t = trie(&[("<", false), ("<s>", true), ("s", false)]);
        assert_eq!(t.longest_match(b"<s>", 0, true), Match::Token(1, 3));
        assert_eq!(t.longest_match(b"<s>", 0, false), Match::Token(0, 1));
    }

    #[test]
    fn many_edges_survive_growth() {
        let words: Vec<String> = (0..5000u32).map(|i| format!("w{i}")).collect();
        let t = Trie::new(
            words
                .iter()
                .enumerate()
                .map(|(id, w)| (id as u32, w.as_str(), false)),
        );
        for (id, w) in words.iter().enumerate() {
            let text = format!("{w} ");
            assert_eq!(
                t.longest_match(text.as_bytes(), 0, false),
                Match::Token(id as u32, w.len())
            );
        }
    }

    #[test]
    fn detects_tokens_crossing_a_cut() {
        let t = trie(&[("a", false), ("b", false), ("ab", false), ("<b", true)]);
        assert!(t.token_crosses(b"ab", 0, 1, false));
        assert!(!t.token_crosses(b"ba", 0, 1, false));
        assert!(!t.token_crosses(b"<b", 0, 1, false));
        assert!(t.token_crosses(b"<b", 0, 1, true));
    }
}
