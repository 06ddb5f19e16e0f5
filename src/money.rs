//! Exact money: a count of cents.
//!
//! Money never touches floating point in storage or arithmetic. PostgreSQL stores it as
//! `DECIMAL(10,2)`, SQLite as an integer number of cents; JSON shows it as a number with at most
//! two decimals (`12.99`), which is how the VoiceOffers API answers.

use std::fmt;
use std::ops::{Add, AddAssign, Mul, Sub};
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// An amount in cents (also used for other two-decimal quantities such as a percent value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(pub i64);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// From a whole number of cents.
    pub const fn cents(cents: i64) -> Self {
        Money(cents)
    }

    /// The number of cents.
    pub const fn as_cents(self) -> i64 {
        self.0
    }

    /// From a decimal, rounded half away from zero to cents.
    pub fn from_decimal(d: Decimal) -> Option<Self> {
        (d * Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            .to_i64()
            .map(Money)
    }

    /// As an exact decimal with two places.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    /// As a float, for presentation and statistics only.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// `self × numerator / denominator`, rounded half away from zero to cents.
    pub fn mul_ratio(self, numerator: i64, denominator: i64) -> Money {
        assert!(denominator > 0, "denominator must be positive");
        let n = i128::from(self.0) * i128::from(numerator);
        let d = i128::from(denominator);
        let q = n / d;
        let r = n % d;
        let rounded = if 2 * r.abs() >= d { q + n.signum() } else { q };
        Money(rounded as i64)
    }

    /// The larger of two amounts.
    pub fn max(self, other: Money) -> Money {
        if self >= other { self } else { other }
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Money) -> Money {
        if self <= other { self } else { other }
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl Mul<i64> for Money {
    type Output = Money;
    fn mul(self, rhs: i64) -> Money {
        Money(self.0 * rhs)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Error parsing a money amount.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an amount of money (expected e.g. 12.99)")]
pub struct ParseMoneyError(String);

impl FromStr for Money {
    type Err = ParseMoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().trim_start_matches('$');
        let d = Decimal::from_str(t).map_err(|_| ParseMoneyError(s.to_string()))?;
        Money::from_decimal(d).ok_or_else(|| ParseMoneyError(s.to_string()))
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Shortest round-trip float formatting prints cents exactly (12.99, not 12.990000001).
        s.serialize_f64(self.to_f64())
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum: that one buffers the value and builds (and
        // drops) an error message for each variant it tries first — a few percent of the HTTP
        // host's CPU per product view, where every price is a float.
        struct Amount;
        impl serde::de::Visitor<'_> for Amount {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of money (a number such as 12.99, or a string)")
            }
            fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<Money, E> {
                i.checked_mul(100)
                    .map(Money)
                    .ok_or_else(|| E::custom(format!("{i} is too large an amount of money")))
            }
            fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Money, E> {
                let i = i64::try_from(u)
                    .map_err(|_| E::custom(format!("{u} is too large an amount of money")))?;
                self.visit_i64(i)
            }
            fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Money, E> {
                // Go through the shortest decimal text so 12.99 stays 12.99.
                f.to_string().parse().map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Money, E> {
                t.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parses_and_rounds() {
        assert_eq!(Money(1299).to_string(), "12.99");
        assert_eq!(Money(-5).to_string(), "-0.05");
        assert_eq!("12.345".parse::<Money>().unwrap(), Money(1235));
        assert_eq!("$3".parse::<Money>().unwrap(), Money(300));
        assert!("abc".parse::<Money>().is_err());
        assert_eq!(Money(1000).mul_ratio(15, 100), Money(150));
        assert_eq!(Money(333).mul_ratio(1, 2), Money(167)); // 1.665 -> 1.67 half away from zero
        assert_eq!(Money(-333).mul_ratio(1, 2), Money(-167));
    }

    #[test]
    fn json_round_trip_is_exact() {
        let json = serde_json::to_string(&Money(1299)).unwrap();
        assert_eq!(json, "12.99");
        assert_eq!(serde_json::from_str::<Money>("12.99").unwrap(), Money(1299));
        assert_eq!(
            serde_json::from_str::<Money>("\"0.10\"").unwrap(),
            Money(10)
        );
        assert_eq!(serde_json::from_str::<Money>("7").unwrap(), Money(700));
        assert_eq!(serde_json::from_str::<Money>("-2.5").unwrap(), Money(-250));
        for bad in [
            "true",
            "\"abc\"",
            "92233720368547759",
            "18446744073709551615",
        ] {
            assert!(serde_json::from_str::<Money>(bad).is_err(), "{bad}");
        }
    }
}
