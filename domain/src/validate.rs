//! Input validation that reports every bad field at once, by JSON path.

use crate::error::{Error, FieldError};

/// `1 character`, `200 characters`.
fn characters(n: usize) -> String {
    if n == 1 {
        "1 character".to_owned()
    } else {
        format!("{n} characters")
    }
}

/// What a text shorter than `min` (trimmed) is told: a required text is just "not empty".
fn too_short(min: usize) -> String {
    if min == 1 {
        "must not be empty".to_owned()
    } else {
        format!("must be at least {}", characters(min))
    }
}

#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) -> &mut Self {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
        self
    }

    /// Trimmed length in characters between `min` and `max`, and no control characters.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) -> &mut Self {
        let len = value.trim().chars().count();
        if len < min {
            self.error(field, too_short(min));
        } else if value.chars().count() > max {
            self.error(field, format!("must be at most {}", characters(max)));
        } else if value.chars().any(char::is_control) {
            self.error(field, "must not contain control characters");
        }
        self
    }

    /// [`Validator::text`] for prose: line breaks and tabs allowed, other control characters not.
    pub fn multiline(&mut self, field: &str, value: &str, min: usize, max: usize) -> &mut Self {
        let len = value.trim().chars().count();
        if len < min {
            self.error(field, too_short(min));
        } else if value.chars().count() > max {
            self.error(field, format!("must be at most {}", characters(max)));
        } else if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            self.error(
                field,
                "must not contain control characters other than line breaks and tabs",
            );
        }
        self
    }

    /// A plausible email address: one `@`, something on both sides, a dot in the domain, no spaces.
    pub fn email(&mut self, field: &str, value: &str) -> &mut Self {
        let ok = value.len() <= 320
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if !ok {
            self.error(field, "must be an email address");
        }
        self
    }

    /// A URL-safe identifier: lowercase letters, digits and dashes, 2 to 63 characters.
    pub fn slug(&mut self, field: &str, value: &str) -> &mut Self {
        let ok = (2..=63).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !value.starts_with('-');
        if !ok {
            self.error(
                field,
                "must be 2-63 lowercase letters, digits or dashes, not starting with a dash",
            );
        }
        self
    }

    pub fn finish(&mut self) -> Result<(), Error> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(std::mem::take(&mut self.errors)))
        }
    }
}

/// Lower-cased, trimmed email: the form stored and compared.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_bad_field() {
        let err = Validator::new()
            .text("name", "", 1, 10)
            .email("email", "not-an-email")
            .slug("slug", "Bad Slug")
            .finish()
            .err();
        let Some(Error::Validation(fields)) = err else {
            panic!("expected a validation error");
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["name", "email", "slug"]);
    }

    /// The messages of a validation.
    fn messages(v: &mut Validator) -> Vec<String> {
        match std::mem::take(v).finish() {
            Err(Error::Validation(fields)) => fields.into_iter().map(|f| f.message).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn length_messages_agree_in_number() {
        let mut v = Validator::new();
        v.text("a", "  ", 1, 10)
            .multiline("b", "", 1, 10)
            .text("c", "x", 2, 10)
            .text("d", "xy", 1, 1)
            .multiline("e", "xyz", 0, 2);
        assert_eq!(
            messages(&mut v),
            [
                "must not be empty",
                "must not be empty",
                "must be at least 2 characters",
                "must be at most 1 character",
                "must be at most 2 characters",
            ]
        );
    }

    #[test]
    fn accepts_good_input() {
        assert!(
            Validator::new()
                .text("name", "Acme Ops", 1, 200)
                .email("email", "ops@acme.example")
                .slug("slug", "acme-ops")
                .finish()
                .is_ok()
        );
    }

    #[test]
    fn rejects_too_long_text_and_control_characters() {
        assert!(
            Validator::new()
                .text("n", &"x".repeat(201), 1, 200)
                .finish()
                .is_err()
        );
        assert!(
            Validator::new()
                .text("n", "a\u{0}b", 1, 200)
                .finish()
                .is_err()
        );
    }
}
