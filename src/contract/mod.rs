//! The two downstream API contracts, as types and checks.
//!
//! These are the bodies flowbridge sends (`PoaItem`, one item of an
//! `addTransaction` batch; `AiccTaskInfo`, the `taskInfo` of an AICC create)
//! and the rules the vendors document for them (required and conditional
//! fields, UTF-8 byte limits, enums, date formats). One definition serves the
//! workflow loader (literal values are checked at load), the engine (rendered
//! values are checked before anything is sent), the sinks and the simulators
//! (which enforce exactly the same rules).

pub mod aicc;
pub mod poa;

use std::fmt;

/// A field that breaks the contract: which field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field name as the API spells it (`taskInfo.title`, `handlers`, …).
    pub field: String,
    /// What is wrong, with the offending value or size.
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.field, self.message)
    }
}

/// Checks that `value` fits in `limit` UTF-8 bytes.
pub fn check_bytes(field: &str, value: &str, limit: usize) -> Result<(), FieldProblem> {
    if value.len() > limit {
        return Err(FieldProblem::new(
            field,
            format!(
                "is {} UTF-8 bytes, over the limit of {limit} ({})",
                value.len(),
                preview(value)
            ),
        ));
    }
    Ok(())
}

/// The first few characters of a value, for error messages about long values.
pub fn preview(value: &str) -> String {
    const MAX_CHARS: usize = 24;
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(MAX_CHARS).collect();
    if chars.next().is_some() {
        format!("\"{head}…\"")
    } else {
        format!("\"{head}\"")
    }
}

/// Checks the `YYYY-MM-DD HH:mm:ss` format AICC documents for `dueDate`,
/// including that the date exists on the calendar.
pub fn check_datetime(field: &str, value: &str) -> Result<(), FieldProblem> {
    let bad = || {
        FieldProblem::new(
            field,
            format!("is \"{value}\", not a date-time in the form YYYY-MM-DD HH:mm:ss"),
        )
    };
    let b = value.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let s = &b[range];
        if s.iter().all(u8::is_ascii_digit) {
            Some(s.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
        } else {
            None
        }
    };
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return Err(bad());
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d == 0 || d > days_in_month || h > 23 || mi > 59 || s > 59 {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_accepts_calendar_dates_only() {
        assert!(check_datetime("d", "2023-07-08 00:00:00").is_ok());
        assert!(check_datetime("d", "2024-02-29 23:59:59").is_ok());
        for bad in [
            "2023-02-29 00:00:00",
            "2023-13-01 00:00:00",
            "2023-07-08T00:00:00",
            "2023-07-08 24:00:00",
            "2023-7-8 00:00:00",
            "",
        ] {
            let err = check_datetime("dueDate", bad).unwrap_err();
            assert!(err.message.contains(bad), "{err}");
        }
    }

    #[test]
    fn byte_limits_count_utf8_bytes_not_chars() {
        // 7 Chinese characters are 21 UTF-8 bytes.
        assert!(check_bytes("ownerId", "智慧校园管理员", 20).is_err());
        assert!(check_bytes("ownerId", "智慧校园管理", 20).is_ok());
    }
}
