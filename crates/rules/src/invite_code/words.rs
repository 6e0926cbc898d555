//! The nameplate word list (`nameplates.txt`, sorted, one lower-case word a
//! line; `nameplates.md` says where the words come from), and lookups in it.

use std::sync::LazyLock;

/// The committed list, split once; sorted, so lookups binary-search.
static WORDS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| include_str!("../nameplates.txt").lines().collect());

/// Every nameplate word, sorted: for tools that complete or list them.
pub fn nameplate_words() -> &'static [&'static str] {
    &WORDS
}

/// Whether `word` (lower case) is a nameplate word.
pub fn is_nameplate_word(word: &str) -> bool {
    lookup(word).is_some()
}

/// The list's own copy of `word` (lower case), when it is a list word.
pub(crate) fn lookup(word: &str) -> Option<&'static str> {
    WORDS.binary_search(&word).ok().map(|i| WORDS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_2048_words_of_3_to_6_letters() {
        assert_eq!(WORDS.len(), 2048);
        for word in WORDS.iter() {
            assert!(
                (3..=6).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_lowercase()),
                "{word:?} is not 3 to 6 letters a-z"
            );
        }
    }

    #[test]
    fn the_list_is_sorted_and_unique_so_lookups_can_binary_search() {
        for pair in WORDS.windows(2) {
            assert!(pair[0] < pair[1], "{:?} before {:?}", pair[0], pair[1]);
        }
        assert!(is_nameplate_word("frog") && is_nameplate_word("lamp"));
        assert!(!is_nameplate_word("Frog") && !is_nameplate_word("fro"));
    }

    #[test]
    fn no_two_words_sound_alike() {
        // Common English homophones and spelling variants: a person hearing
        // one of a pair may type the other, so the list holds at most one.
        let pairs = [
            ("pair", "pear"),
            ("sea", "see"),
            ("bear", "bare"),
            ("hair", "hare"),
            ("mail", "male"),
            ("tail", "tale"),
            ("sail", "sale"),
            ("meat", "meet"),
            ("road", "rode"),
            ("week", "weak"),
            ("flour", "flower"),
            ("night", "knight"),
            ("right", "write"),
            ("plain", "plane"),
            ("peace", "piece"),
            ("steal", "steel"),
            ("hour", "our"),
            ("deer", "dear"),
            ("sole", "soul"),
            ("wait", "weight"),
            ("rain", "reign"),
            ("site", "sight"),
            ("knot", "not"),
            ("know", "no"),
            ("sun", "son"),
            ("tide", "tied"),
            ("toe", "tow"),
            ("wood", "would"),
            ("cent", "scent"),
            ("cash", "cache"),
            ("idle", "idol"),
            ("gray", "grey"),
            ("armor", "armour"),
            ("mold", "mould"),
            ("carrot", "carat"),
            ("canon", "cannon"),
            ("lily", "lilly"),
            ("kept", "capped"),
            ("whole", "hole"),
            ("very", "vary"),
        ];
        for (a, b) in pairs {
            assert!(
                !(is_nameplate_word(a) && is_nameplate_word(b)),
                "both {a:?} and {b:?} are list words"
            );
        }
    }

    /// The words of sorted `words` that start with `prefix`: a run.
    fn with_prefix<'a>(words: &[&'a str], prefix: &str) -> Vec<&'a str> {
        let start = words.partition_point(|w| *w < prefix);
        words[start..]
            .iter()
            .take_while(|w| w.starts_with(prefix))
            .copied()
            .collect()
    }

    /// The words of sorted `words` that are two of its words joined, as
    /// (word, first, second).
    fn joined_words<'a>(words: &[&'a str]) -> Vec<(&'a str, &'a str, &'a str)> {
        let is_word = |w: &str| words.binary_search(&w).is_ok();
        let mut found = Vec::new();
        for word in words {
            for split in 3..=word.len().saturating_sub(3) {
                let (head, tail) = word.split_at(split);
                if is_word(head) && is_word(tail) {
                    found.push((*word, head, tail));
                }
            }
        }
        found
    }

    /// Two joined words of sorted `words` that split another way, as
    /// (a, b, c, d) with a+b = c+d. If a+b = c+d and a != c, one of a, c
    /// is a proper prefix of the other, say c = a+s, and then b = s+d. So
    /// it is enough to look, for each word a and each longer word c that
    /// it begins, for a word b that starts with the rest s of c and ends
    /// in a word d: far fewer steps than joining every pair.
    fn two_way_splits<'a>(words: &[&'a str]) -> Vec<(&'a str, &'a str, &'a str, &'a str)> {
        let is_word = |w: &str| words.binary_search(&w).is_ok();
        let mut found = Vec::new();
        for a in words {
            for c in with_prefix(words, a)
                .into_iter()
                .filter(|c| c.len() > a.len())
            {
                let rest = &c[a.len()..];
                for b in with_prefix(words, rest) {
                    let d = &b[rest.len()..];
                    if is_word(d) {
                        found.push((*a, b, c, d));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn no_word_is_two_words_joined() {
        assert_eq!(joined_words(&WORDS), []);
        assert_eq!(
            joined_words(&["car", "carpet", "pet"]),
            [("carpet", "car", "pet")]
        );
    }

    #[test]
    fn two_words_joined_split_only_one_way() {
        assert_eq!(two_way_splits(&WORDS), []);
        assert_eq!(
            two_way_splits(&["date", "set", "setup", "update"]),
            [("set", "update", "setup", "date")]
        );
    }
}
