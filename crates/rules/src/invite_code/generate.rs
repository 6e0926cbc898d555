//! Drawing new codes (a free nameplate, secret digits) from randomness the
//! caller supplies, and which nameplates count as held.
//!
//! Randomness comes in as `random: impl FnMut() -> Result<u64, E>`, each
//! call a fresh uniformly random `u64`: on the server the operating
//! system's (`getrandom::u64`, its error passed through), in tests a fixed
//! sequence. Draws are mapped to a range by rejection, never by a bare
//! `%`, so no value is likelier than another.

use std::time::Duration;

use lanrage_proto::Timestamp;

use super::{InviteDigits, InviteSecret, Nameplate, nameplate_words};

/// How long a nameplate rests after its invite ends (expires, is used up
/// or revoked) before it can be drawn again, so a late guest with an old
/// code does not land in someone else's newer invite.
pub const NAMEPLATE_REST: Duration = Duration::from_secs(24 * 60 * 60);

/// How many uniform draws [`pick_nameplate`] tries before it counts the
/// free nameplates and picks among them; with at most half of them held
/// (see [`needs_two_words`]), all tries fail about once in 65,536 picks.
pub const RANDOM_TRIES: usize = 16;

/// The instant after which an invite's end still holds its nameplate, for
/// a pick at `now`.
pub fn nameplate_rest_cutoff(now: Timestamp) -> Timestamp {
    crate::stale_cutoff(now, NAMEPLATE_REST)
}

/// Whether an invite holds its nameplate as of `cutoff`
/// ([`nameplate_rest_cutoff`]): until [`NAMEPLATE_REST`] after it ended,
/// which is when it was revoked, used up or its party ended (`ended_at`),
/// or else when it expires. The server's query for held nameplates
/// (`COALESCE(ended_at, expires_at) > cutoff`) is the same test.
pub fn holds_nameplate(
    ended_at: Option<Timestamp>,
    expires_at: Timestamp,
    cutoff: Timestamp,
) -> bool {
    ended_at.unwrap_or(expires_at) > cutoff
}

/// Whether new invites get two-word nameplates, with `held_one_word`
/// one-word nameplates held ([`holds_nameplate`]): from half the list on,
/// so one-word picks stay quick and a guessed word rarely hits an invite.
pub fn needs_two_words(held_one_word: usize) -> bool {
    held_one_word >= nameplate_words().len() / 2
}

/// A free nameplate of one word (or of two, with `two_words`), uniformly
/// among the free ones; none when every one is held.
///
/// `is_held` is asked about candidates, up to twice per nameplate when most
/// are held: make it a lookup in what the caller loaded (a set of the held
/// nameplates' stored forms), not a query each. A nameplate it calls free
/// must still be claimed under the uniqueness rule (a unique index), which
/// settles a race with another pick.
pub fn pick_nameplate<E>(
    two_words: bool,
    mut is_held: impl FnMut(Nameplate) -> bool,
    mut random: impl FnMut() -> Result<u64, E>,
) -> Result<Option<Nameplate>, E> {
    let space = Space::new(two_words);
    // Each try is uniform over all nameplates and kept only when free,
    // so a kept one is uniform over the free ones.
    for _ in 0..RANDOM_TRIES {
        let candidate = space.at(below(space.size, &mut random)?);
        if !is_held(candidate) {
            return Ok(Some(candidate));
        }
    }
    // Most are held: count the free ones and pick one of them, also
    // uniformly, which bounds the work where retrying would not.
    let free = space.all().filter(|n| !is_held(*n)).count();
    if free == 0 {
        return Ok(None);
    }
    let pick = below(free as u64, &mut random)?;
    Ok(space.all().filter(|n| !is_held(*n)).nth(index(pick)))
}

/// A new secret of `digits` uniformly random digits, leading zeros kept.
pub fn generate_secret<E>(
    digits: InviteDigits,
    mut random: impl FnMut() -> Result<u64, E>,
) -> Result<InviteSecret, E> {
    let value = below(10u64.pow(u32::from(digits.get())), &mut random)?;
    let width = usize::from(digits.get());
    Ok(InviteSecret(format!("{value:0width$}")))
}

/// The nameplates of one kind, numbered: `i` is a word, or the pair of
/// words `i / n` and `i % n`.
struct Space {
    two_words: bool,
    size: u64,
}

impl Space {
    fn new(two_words: bool) -> Self {
        let words = nameplate_words().len() as u64;
        let size = if two_words { words * words } else { words };
        Self { two_words, size }
    }

    fn at(&self, i: u64) -> Nameplate {
        let words = nameplate_words();
        if self.two_words {
            let n = words.len() as u64;
            Nameplate {
                first: words[index(i / n)],
                second: Some(words[index(i % n)]),
            }
        } else {
            Nameplate {
                first: words[index(i)],
                second: None,
            }
        }
    }

    fn all(&self) -> impl Iterator<Item = Nameplate> + '_ {
        (0..self.size).map(|i| self.at(i))
    }
}

/// `i`, known to be below a list's length, as an index.
fn index(i: u64) -> usize {
    usize::try_from(i).expect("below a length, which fits in usize")
}

/// A uniform draw from `0..n` (`n` > 0). The `2^64 mod n` smallest draws
/// are thrown back: what is left is a whole number of runs of `n`, so
/// `% n` then favours no value.
fn below<E>(n: u64, random: &mut impl FnMut() -> Result<u64, E>) -> Result<u64, E> {
    let partial = n.wrapping_neg() % n;
    loop {
        let draw = random()?;
        if draw >= partial {
            return Ok(draw % n);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::convert::Infallible;

    use proptest::prelude::*;

    use super::*;

    /// A random source that yields `draws` in order (and fails the test if
    /// asked for more).
    fn draws(draws: &[u64]) -> impl FnMut() -> Result<u64, Infallible> + '_ {
        let mut draws = draws.iter();
        move || Ok(*draws.next().expect("the test supplied enough draws"))
    }

    fn word(i: usize) -> &'static str {
        nameplate_words()[i]
    }

    fn free(_: Nameplate) -> bool {
        false
    }

    #[test]
    fn draws_that_would_bias_the_result_are_thrown_back() {
        // 2^64 mod 10,000 = 1,616: draws below it are refused.
        let partial = 1_616;
        assert_eq!(
            below(10_000, &mut draws(&[partial - 1, partial])),
            Ok(1_616)
        );
        assert_eq!(below(10_000, &mut draws(&[0, 10_042])), Ok(42));
        assert_eq!(below(10_000, &mut draws(&[u64::MAX])), Ok(1_615));
        // A power of two divides 2^64: nothing is refused.
        assert_eq!(below(2_048, &mut draws(&[0])), Ok(0));
        assert_eq!(below(1, &mut draws(&[u64::MAX])), Ok(0));
    }

    #[test]
    fn secrets_keep_their_leading_zeros() {
        let four = InviteDigits::DEFAULT;
        let secret = generate_secret(four, draws(&[100, 10_042])).unwrap();
        assert_eq!(secret.expose(), "0042");
        let eight = InviteDigits::new(8).unwrap();
        let secret = generate_secret(eight, draws(&[100_000_000 + 7])).unwrap();
        assert_eq!(secret.expose(), "00000007");
    }

    #[test]
    fn the_random_source_failing_fails_the_draw() {
        let failing = || Err::<u64, &str>("no randomness");
        assert_eq!(
            generate_secret(InviteDigits::DEFAULT, failing),
            Err("no randomness")
        );
        assert_eq!(pick_nameplate(false, free, failing), Err("no randomness"));
    }

    #[test]
    fn a_pick_numbers_one_and_two_word_nameplates_from_the_list() {
        let one = pick_nameplate(false, free, draws(&[5])).unwrap();
        assert_eq!(one, Nameplate::one(word(5)));
        let two = pick_nameplate(true, free, draws(&[3 * 2048 + 7])).unwrap();
        assert_eq!(two, Nameplate::two(word(3), word(7)));
        let last = pick_nameplate(true, free, draws(&[2048 * 2048 - 1])).unwrap();
        assert_eq!(last, Nameplate::two(word(2047), word(2047)));
    }

    #[test]
    fn a_pick_skips_held_nameplates() {
        let held: HashSet<String> = [word(5).to_owned()].into();
        let is_held = |n: Nameplate| held.contains(&n.to_string());
        let picked = pick_nameplate(false, is_held, draws(&[5, 5, 9])).unwrap();
        assert_eq!(picked, Nameplate::one(word(9)));
    }

    #[test]
    fn when_most_are_held_a_pick_chooses_among_the_free_ones_by_count() {
        let free_words = [word(3), word(700), word(2000)];
        let is_held = |n: Nameplate| !free_words.contains(&n.first());
        // Every try lands on a held word (0); then the last draw picks the
        // first, second or third free one (draw % 3; 0 itself is one of
        // the 2^64 mod 3 = 1 draws thrown back).
        for (last, expected) in [(3, 3), (1, 700), (2, 2000), (5, 2000)] {
            let mut sequence = vec![0; RANDOM_TRIES];
            sequence.push(last);
            let picked = pick_nameplate(false, is_held, draws(&sequence)).unwrap();
            assert_eq!(picked, Nameplate::one(word(expected)));
        }
    }

    #[test]
    fn with_every_nameplate_held_there_is_none_to_pick() {
        let sequence = vec![0; RANDOM_TRIES];
        assert_eq!(pick_nameplate(false, |_| true, draws(&sequence)), Ok(None));
    }

    #[test]
    fn picks_spread_evenly_over_the_free_words() {
        // Half the words held (the even ones); a simple generator stands
        // in for the OS. Each free word should come up about 20 times.
        let is_held = |n: Nameplate| {
            let i = nameplate_words().binary_search(&n.first()).unwrap();
            i.is_multiple_of(2)
        };
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut xorshift = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            Ok::<_, Infallible>(state)
        };
        let mut counts = vec![0u32; 2048];
        for _ in 0..1024 * 20 {
            let picked = pick_nameplate(false, is_held, &mut xorshift)
                .unwrap()
                .unwrap();
            counts[nameplate_words().binary_search(&picked.first()).unwrap()] += 1;
        }
        for (i, count) in counts.iter().enumerate() {
            if i.is_multiple_of(2) {
                assert_eq!(*count, 0, "{} is held", word(i));
            } else {
                assert!(
                    (3..=45).contains(count),
                    "{} came up {count} times",
                    word(i)
                );
            }
        }
    }

    #[test]
    fn two_words_from_half_the_list_held() {
        assert!(!needs_two_words(0));
        assert!(!needs_two_words(1023));
        assert!(needs_two_words(1024));
        assert!(needs_two_words(2048));
    }

    #[test]
    fn a_nameplate_rests_24_hours_after_its_invite_ends() {
        let now = Timestamp::from_micros(1_700_000_000_000_000);
        let cutoff = nameplate_rest_cutoff(now);
        let hours_ago = |h: i64| now.plus_secs(-h * 3600);
        let later = now.plus_secs(3600);
        assert!(holds_nameplate(None, later, cutoff), "a live invite");
        assert!(holds_nameplate(Some(hours_ago(0)), later, cutoff));
        assert!(holds_nameplate(
            Some(now.plus_secs(-24 * 3600 + 1)),
            later,
            cutoff
        ));
        assert!(!holds_nameplate(Some(hours_ago(24)), later, cutoff));
        assert!(!holds_nameplate(Some(hours_ago(25)), later, cutoff));
        // Never ended early: it ended when it expired.
        assert!(holds_nameplate(None, hours_ago(23), cutoff));
        assert!(!holds_nameplate(None, hours_ago(25), cutoff));
    }

    proptest! {
        #[test]
        fn secrets_have_the_set_number_of_digits(digits in 4u8..=8, seed in any::<u64>()) {
            let digits = InviteDigits::new(digits).unwrap();
            let mut state = seed;
            let counter = move || {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                Ok::<_, Infallible>(state)
            };
            let secret = generate_secret(digits, counter).unwrap();
            prop_assert_eq!(secret.expose().len(), usize::from(digits.get()));
            prop_assert!(secret.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
