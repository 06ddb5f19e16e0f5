//! The simulated calendar scripts see: date, weekday, hour, month and US holidays.
//!
//! Holidays are computed from the date (no table to keep up to date): the US federal holidays
//! plus the shopping-relevant days around them (Christmas Eve, New Year's Eve, Easter, Black
//! Friday), because grocery demand peaks before them.

use chrono::{Datelike, NaiveDate, Weekday};
use rhai::{Engine, INT, ImmutableString};

/// One decision's moment on the simulated calendar.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// The simulated date.
    pub date: NaiveDate,
    /// Days since the run's first day.
    pub day: u32,
    /// Minute of the day (0–1439) the decision is made at (0 for day plans).
    pub minute: u16,
    holiday: Option<&'static str>,
    next_holiday: (&'static str, i64),
}

/// The n-th (1-based) given weekday of a month.
fn nth_weekday(year: i32, month: u32, wd: Weekday, n: u8) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(year, month, wd, n)
}

fn last_weekday(year: i32, month: u32, wd: Weekday) -> Option<NaiveDate> {
    nth_weekday(year, month, wd, 5).or_else(|| nth_weekday(year, month, wd, 4))
}

/// Easter Sunday (Gregorian, anonymous algorithm).
fn easter(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

/// The holidays of a year, in date order.
pub fn holidays(year: i32) -> Vec<(NaiveDate, &'static str)> {
    let ymd = |m, d| NaiveDate::from_ymd_opt(year, m, d);
    let thanksgiving = nth_weekday(year, 11, Weekday::Thu, 4);
    let mut v: Vec<(Option<NaiveDate>, &'static str)> = vec![
        (ymd(1, 1), "new_year"),
        (nth_weekday(year, 1, Weekday::Mon, 3), "mlk_day"),
        (ymd(2, 14), "valentines_day"),
        (nth_weekday(year, 2, Weekday::Mon, 3), "presidents_day"),
        (easter(year), "easter"),
        (last_weekday(year, 5, Weekday::Mon), "memorial_day"),
        (ymd(6, 19), "juneteenth"),
        (ymd(7, 4), "independence_day"),
        (nth_weekday(year, 9, Weekday::Mon, 1), "labor_day"),
        (nth_weekday(year, 10, Weekday::Mon, 2), "columbus_day"),
        (ymd(10, 31), "halloween"),
        (ymd(11, 11), "veterans_day"),
        (thanksgiving, "thanksgiving"),
        (thanksgiving.and_then(|d| d.succ_opt()), "black_friday"),
        (ymd(12, 24), "christmas_eve"),
        (ymd(12, 25), "christmas"),
        (ymd(12, 31), "new_years_eve"),
    ];
    v.sort_by_key(|(d, _)| *d);
    v.into_iter()
        .filter_map(|(d, n)| d.map(|d| (d, n)))
        .collect()
}

fn holiday_info(date: NaiveDate) -> (Option<&'static str>, (&'static str, i64)) {
    let mut today = None;
    let mut next = ("new_year", 366);
    'years: for y in [date.year(), date.year() + 1] {
        for (d, n) in holidays(y) {
            if d == date {
                today = Some(n);
            } else if d > date {
                next = (n, (d - date).num_days());
                break 'years;
            }
        }
    }
    (today, next)
}

impl Calendar {
    /// The calendar at `minute` of `date`, the run's `day`-th day.
    pub fn new(date: NaiveDate, day: u32, minute: u16) -> Self {
        let (holiday, next_holiday) = holiday_info(date);
        Calendar {
            date,
            day,
            minute: minute.min(1439),
            holiday,
            next_holiday,
        }
    }

    /// The same day at another minute (no holiday recomputation).
    pub fn at_minute(&self, minute: u16) -> Self {
        let mut c = self.clone();
        c.minute = minute.min(1439);
        c
    }

    /// Monday = 0 … Sunday = 6.
    pub fn weekday(&self) -> u32 {
        self.date.weekday().num_days_from_monday()
    }

    /// Today's holiday, if any.
    pub fn holiday(&self) -> Option<&'static str> {
        self.holiday
    }
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Registers the read-only `Calendar` type (properties documented in `behaviors/README.md`).
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Calendar>("Calendar")
        .register_get("date", |c: &mut Calendar| -> ImmutableString {
            c.date.format("%Y-%m-%d").to_string().into()
        })
        .register_get("day", |c: &mut Calendar| c.day as INT)
        .register_get("year", |c: &mut Calendar| c.date.year() as INT)
        .register_get("month", |c: &mut Calendar| c.date.month() as INT)
        .register_get("day_of_month", |c: &mut Calendar| c.date.day() as INT)
        .register_get("day_of_year", |c: &mut Calendar| c.date.ordinal() as INT)
        .register_get("weekday", |c: &mut Calendar| c.weekday() as INT)
        .register_get("weekday_name", |c: &mut Calendar| -> ImmutableString {
            WEEKDAYS[c.weekday() as usize].into()
        })
        .register_get("is_weekend", |c: &mut Calendar| c.weekday() >= 5)
        .register_get("hour", |c: &mut Calendar| (c.minute / 60) as INT)
        .register_get("minute", |c: &mut Calendar| c.minute as INT)
        .register_get("is_holiday", |c: &mut Calendar| c.holiday.is_some())
        .register_get("holiday", |c: &mut Calendar| -> ImmutableString {
            c.holiday.unwrap_or("").into()
        })
        .register_get("next_holiday", |c: &mut Calendar| -> ImmutableString {
            c.next_holiday.0.into()
        })
        .register_get("days_to_holiday", |c: &mut Calendar| {
            c.next_holiday.1 as INT
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holidays_fall_on_known_dates() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(
            Calendar::new(d(2024, 11, 28), 0, 0).holiday(),
            Some("thanksgiving")
        );
        assert_eq!(
            Calendar::new(d(2024, 3, 31), 0, 0).holiday(),
            Some("easter")
        );
        assert_eq!(
            Calendar::new(d(2024, 5, 27), 0, 0).holiday(),
            Some("memorial_day")
        );
        let c = Calendar::new(d(2024, 12, 20), 0, 600);
        assert_eq!(c.holiday(), None);
        assert_eq!(c.next_holiday, ("christmas_eve", 4));
        assert_eq!(
            Calendar::new(d(2024, 12, 31), 0, 0).next_holiday,
            ("new_year", 1)
        );
        assert_eq!(Calendar::new(d(2024, 1, 1), 0, 0).weekday(), 0);
    }
}
