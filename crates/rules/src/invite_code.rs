//! Join codes (`FROG-7421`, `FROG-LAMP-7421`): their words, how people's
//! typing is read back, and how new ones are drawn. Pure, like the rest of
//! the crate: the caller supplies the randomness and says which nameplates
//! are held.
//!
//! A code is a nameplate and a secret. The nameplate is one word, or two
//! once half the one-word nameplates are held ([`needs_two_words`]), from a
//! list of 2,048 short, common, phonetically distinct words
//! ([`nameplate_words`]; `nameplates.md` beside this file says where they
//! come from: a selection from the EFF's word lists, CC BY 3.0 US). The
//! secret is [`InviteDigits`] random digits (4 by default, 4 to 8).
//!
//! Reading a code ([`InviteCode::parse`]) trims the input, ignores case and
//! takes `-`, space, `_` or nothing between its parts. Any other character,
//! non-ASCII look-alikes included, makes it [`CodeError::Malformed`] (the
//! server answers 422); a well-formed code whose nameplate is not made of
//! list words is [`CodeError::UnknownWord`], answered 404 with the same
//! [`INVITE_NOT_FOUND`] detail as an unknown, expired, used-up or revoked
//! code or a wrong secret, so a guesser learns nothing from the answer.
//!
//! Choices the design left open, made here:
//! - **Digit count.** Any count from 4 to 8 reads; fewer or more is
//!   malformed. A count other than the server's current setting is *not*
//!   malformed: invites made before the setting changed keep the secret
//!   they were made with, so a wrong count is just a wrong secret (404).
//! - **Separators.** A run of separators counts as one (`FROG - 7421`,
//!   `FROG__7421`): runs cannot make a code ambiguous and people type them.
//!   A separator before the first part or after the last is malformed.
//! - **Trimming** removes Unicode white space at both ends (what a paste
//!   from a web page or chat brings along); inside the code only the ASCII
//!   space separates.
//! - **Word boundaries** without separators (`FROGLAMP7421`) are found in
//!   the list, which is chosen so that two joined words split only one way
//!   and no word is two words joined (a test over the whole list checks
//!   it). Were that ever broken, the one-word reading wins, then the one
//!   with the shorter first word.
//! - **Three or more words** are malformed: no nameplate has more than two.

mod generate;
mod parse;
mod words;

use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;

pub use generate::{
    NAMEPLATE_REST, RANDOM_TRIES, generate_secret, holds_nameplate, nameplate_rest_cutoff,
    needs_two_words, pick_nameplate,
};
pub use words::{is_nameplate_word, nameplate_words};

/// The `detail` of every 404 a join code can get: unknown, expired, used
/// up, revoked, a wrong secret, or a nameplate that is not list words.
pub const INVITE_NOT_FOUND: &str = "invite code not found or no longer valid";

/// The longest input (after trimming, in bytes) that is read at all; a
/// code is at most 22 characters (`SHAPES-SHAPES-12345678`), this leaves
/// room for runs of separators and bounds the work a request can cause.
pub const MAX_CODE_INPUT: usize = 64;

/// Why a typed code (or nameplate) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// Not the shape of a code (answered 422).
    #[error("invalid invite code: {0}")]
    Malformed(MalformedCode),
    /// The shape of a code, but its nameplate is not made of list words
    /// (answered 404, like every other code that leads nowhere).
    #[error("{INVITE_NOT_FOUND}")]
    UnknownWord,
}

// By hand rather than `#[from]`, which would also make the reason the
// error's source and print it twice in an error chain.
impl From<MalformedCode> for CodeError {
    fn from(why: MalformedCode) -> Self {
        Self::Malformed(why)
    }
}

/// What is wrong with the shape of a typed code; each text is meant for
/// the person who typed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedCode {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_CODE_INPUT} characters")]
    TooLong,
    /// A character other than `a`-`z`, `A`-`Z`, `0`-`9`, `-`, `_` and
    /// space; the text names its code point, so a look-alike (Cyrillic
    /// `А`, full-width `７`) can be told from the real one.
    #[error("it holds {0:?} (U+{code:04X}); a code has only letters, digits and '-', '_' or space between its parts", code = u32::from(*.0))]
    Character(char),
    /// Parts in the wrong order or missing: not words followed by digits.
    #[error("a code is a word or two and then its digits, like FROG-7421")]
    Shape,
    #[error("it has more than two words")]
    TooManyWords,
    /// The number of digits, when outside 4 to 8.
    #[error("it has {0} digits; a code has 4 to 8")]
    DigitCount(usize),
}

/// How many digits new secrets get (`LANRAGE_INVITE_DIGITS`): 4 to 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InviteDigits(u8);

impl InviteDigits {
    pub const MIN: u8 = 4;
    pub const MAX: u8 = 8;
    pub const DEFAULT: Self = Self(4);

    /// The setting `digits`, when within 4 to 8.
    pub fn new(digits: u8) -> Result<Self, DigitsOutOfRange> {
        (Self::MIN..=Self::MAX)
            .contains(&digits)
            .then_some(Self(digits))
            .ok_or(DigitsOutOfRange(digits))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for InviteDigits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u8> for InviteDigits {
    type Error = DigitsOutOfRange;

    fn try_from(digits: u8) -> Result<Self, Self::Error> {
        Self::new(digits)
    }
}

/// A digit setting outside 4 to 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invite codes have 4 to 8 digits, not {0}")]
pub struct DigitsOutOfRange(pub u8);

/// The word part of a code: one list word, or two. Unique among held
/// nameplates, so the server finds an invite by it and then checks the
/// secret.
///
/// Its `Display` is the stored form: lower case, two words joined by `-`
/// (`frog`, `frog-lamp`), the key the server stores and looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nameplate {
    first: &'static str,
    second: Option<&'static str>,
}

impl Nameplate {
    /// Reads a nameplate alone (`frog-lamp`, `FROG LAMP`, `froglamp`), with
    /// the same leniency as [`InviteCode::parse`]: how the server reads its
    /// stored form back, and how a tool takes one from a person.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        parse::nameplate(input)
    }

    /// The nameplate of one word, when `word` is a list word (lower case).
    pub fn one(word: &str) -> Option<Self> {
        Some(Self {
            first: words::lookup(word)?,
            second: None,
        })
    }

    /// The nameplate of two words, when both are list words (lower case).
    pub fn two(first: &str, second: &str) -> Option<Self> {
        Some(Self {
            first: words::lookup(first)?,
            second: Some(words::lookup(second)?),
        })
    }

    pub fn first(&self) -> &'static str {
        self.first
    }

    pub fn second(&self) -> Option<&'static str> {
        self.second
    }

    /// Whether it is made of two words (the server counts held one-word
    /// nameplates for [`needs_two_words`]).
    pub fn is_two_words(&self) -> bool {
        self.second.is_some()
    }

    /// Appends it upper case, words joined by `-`: how people see it.
    fn push_shown(&self, out: &mut String) {
        out.push_str(&self.first.to_ascii_uppercase());
        if let Some(second) = self.second {
            out.push('-');
            out.push_str(&second.to_ascii_uppercase());
        }
    }
}

impl fmt::Display for Nameplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.first)?;
        if let Some(second) = self.second {
            write!(f, "-{second}")?;
        }
        Ok(())
    }
}

impl FromStr for Nameplate {
    type Err = CodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The digits of a code: 4 to 8 ASCII digits, leading zeros kept. It is
/// what makes a code a credential, so its `Debug` hides it and it has no
/// `Display`: [`expose`](Self::expose) says where it is read on purpose.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteSecret(String);

impl InviteSecret {
    /// The secret `digits`, when it is 4 to 8 ASCII digits.
    pub fn parse(digits: &str) -> Result<Self, MalformedCode> {
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(MalformedCode::Character(c));
        }
        let range = usize::from(InviteDigits::MIN)..=usize::from(InviteDigits::MAX);
        if !range.contains(&digits.len()) {
            return Err(MalformedCode::DigitCount(digits.len()));
        }
        Ok(Self(digits.to_owned()))
    }

    /// The digits, for storing them or showing them to the invitee.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `stored` is this secret, compared in time that does not
    /// depend on where they differ, so response timing cannot be used to
    /// guess a secret digit by digit. (A different length answers at once:
    /// the length is not secret.)
    pub fn matches(&self, stored: &str) -> bool {
        self.0.as_bytes().ct_eq(stored.as_bytes()).into()
    }
}

impl fmt::Debug for InviteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InviteSecret({} digits)", self.0.len())
    }
}

/// A join code read from a person or just drawn: its [`Nameplate`] and its
/// [`InviteSecret`]. Like the secret, it has no `Display` and its `Debug`
/// hides the digits; [`reveal`](Self::reveal) writes it out on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCode {
    nameplate: Nameplate,
    secret: InviteSecret,
}

impl InviteCode {
    pub fn new(nameplate: Nameplate, secret: InviteSecret) -> Self {
        Self { nameplate, secret }
    }

    /// Reads a code as a person typed it; the module docs give the rules.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        parse::code(input)
    }

    pub fn nameplate(&self) -> Nameplate {
        self.nameplate
    }

    pub fn secret(&self) -> &InviteSecret {
        &self.secret
    }

    pub fn into_parts(self) -> (Nameplate, InviteSecret) {
        (self.nameplate, self.secret)
    }

    /// The code as people see it: upper case, parts joined by `-`
    /// (`FROG-7421`, `FROG-LAMP-7421`). It holds the secret: for the
    /// invitee's eyes, not for logs.
    pub fn reveal(&self) -> String {
        let mut shown = String::with_capacity(24);
        self.nameplate.push_shown(&mut shown);
        shown.push('-');
        shown.push_str(self.secret.expose());
        shown
    }
}

impl FromStr for InviteCode {
    type Err = CodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(nameplate: Nameplate, digits: &str) -> InviteCode {
        InviteCode::new(nameplate, InviteSecret::parse(digits).unwrap())
    }

    #[test]
    fn digit_settings_are_4_to_8() {
        assert_eq!(InviteDigits::default().get(), 4);
        assert_eq!(InviteDigits::new(8).map(InviteDigits::get), Ok(8));
        assert_eq!(InviteDigits::new(3), Err(DigitsOutOfRange(3)));
        assert_eq!(InviteDigits::try_from(9), Err(DigitsOutOfRange(9)));
    }

    #[test]
    fn nameplates_are_stored_lower_case_and_shown_upper_case() {
        let frog = Nameplate::one("frog").unwrap();
        let frog_lamp = Nameplate::two("frog", "lamp").unwrap();
        assert_eq!(frog.to_string(), "frog");
        assert_eq!(frog_lamp.to_string(), "frog-lamp");
        assert!(!frog.is_two_words() && frog_lamp.is_two_words());
        assert_eq!(code(frog, "7421").reveal(), "FROG-7421");
        assert_eq!(code(frog_lamp, "0042").reveal(), "FROG-LAMP-0042");
    }

    #[test]
    fn only_list_words_make_nameplates() {
        assert_eq!(Nameplate::one("carpet"), None);
        assert_eq!(
            Nameplate::one("FROG"),
            None,
            "the stored form is lower case"
        );
        assert_eq!(Nameplate::two("frog", "xyzzy"), None);
    }

    #[test]
    fn secrets_are_4_to_8_ascii_digits() {
        assert!(InviteSecret::parse("0000").is_ok());
        assert!(InviteSecret::parse("12345678").is_ok());
        assert_eq!(
            InviteSecret::parse("123"),
            Err(MalformedCode::DigitCount(3))
        );
        assert_eq!(
            InviteSecret::parse("123456789"),
            Err(MalformedCode::DigitCount(9))
        );
        assert_eq!(
            InviteSecret::parse("12３4"),
            Err(MalformedCode::Character('３'))
        );
    }

    #[test]
    fn secrets_match_only_themselves_and_never_print() {
        let secret = InviteSecret::parse("7421").unwrap();
        assert!(secret.matches("7421"));
        assert!(!secret.matches("7420"));
        assert!(!secret.matches("74210"));
        assert!(!secret.matches(""));
        let code = code(Nameplate::one("frog").unwrap(), "7421");
        assert!(!format!("{code:?}").contains("7421"));
        assert_eq!(format!("{secret:?}"), "InviteSecret(4 digits)");
    }

    #[test]
    fn error_texts_name_the_problem_and_404s_share_one_detail() {
        assert_eq!(CodeError::UnknownWord.to_string(), INVITE_NOT_FOUND);
        assert_eq!(
            CodeError::from(MalformedCode::Character('А')).to_string(),
            "invalid invite code: it holds 'А' (U+0410); a code has only letters, \
             digits and '-', '_' or space between its parts"
        );
        assert_eq!(
            MalformedCode::DigitCount(3).to_string(),
            "it has 3 digits; a code has 4 to 8"
        );
    }
}
