//! Pricing of a cart: pure functions, no database. The cart summary and checkout both call
//! [`price_cart`], so what a shopper is shown is exactly what an order records.

use uuid::Uuid;

use crate::catalog::{Coupon, CouponKind, DiscountType};
use crate::money::Money;

use super::views::{CartSummary, ItemDiscount};

/// One cart line as pricing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    /// The product.
    pub product_id: Uuid,
    /// Its category (matched case-insensitively against category coupons).
    pub category: String,
    /// Its brand (matched case-insensitively against brand coupons).
    pub brand: Option<String>,
    /// Unit price.
    pub unit_price: Money,
    /// Units.
    pub quantity: i64,
}

impl PricedLine {
    /// `unit_price × quantity`.
    pub fn amount(&self) -> Money {
        self.unit_price * self.quantity
    }
}

/// The discount `coupon` gives on `amount`, rounded half away from zero to cents.
///
/// percent → amount × value / 100, capped at `max_discount` when it is set and > 0;
/// fixed → min(value, amount); bogo → (amount / 2) × value / 100; free_shipping → 0.
/// The result is never negative and never more than `amount` (a discount cannot pay the
/// shopper). Minimum purchase amounts are the caller's business (see [`price_cart`]).
pub fn coupon_discount(coupon: &Coupon, amount: Money) -> Money {
    if amount <= Money::ZERO {
        return Money::ZERO;
    }
    // discount_value holds a percent as a two-decimal number (20.00 → 2000), so
    // amount × value / 100 = amount_cents × value_cents / 10_000, rounded once.
    let value = coupon.discount_value.as_cents();
    let discount = match coupon.discount_type {
        DiscountType::Percent => {
            let d = amount.mul_ratio(value, 10_000);
            match coupon.max_discount {
                Some(cap) if cap > Money::ZERO => d.min(cap),
                _ => d,
            }
        }
        DiscountType::Fixed => coupon.discount_value.min(amount),
        DiscountType::Bogo => amount.mul_ratio(value, 20_000),
        DiscountType::FreeShipping => Money::ZERO,
    };
    discount.max(Money::ZERO).min(amount)
}

/// True when `amount` meets the coupon's minimum purchase amount (or it has none).
pub fn meets_minimum(coupon: &Coupon, amount: Money) -> bool {
    coupon.min_purchase_amount.is_none_or(|m| amount >= m)
}

fn targets(coupon: &Coupon, kind: CouponKind, value: Option<&str>) -> bool {
    coupon.kind == kind
        && match (coupon.category_or_brand.as_deref(), value) {
            (Some(target), Some(v)) => same_ignoring_case(target.trim(), v.trim()),
            _ => false,
        }
}

/// `a == b` ignoring case: ASCII compared in place (pricing compares every line with every
/// coupon, and lower-cased copies were most of its allocations); otherwise Unicode lower case.
fn same_ignoring_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// The best coupon of `kind` for a line: largest discount > 0 among those matching `value`
/// whose minimum is met by `amount`; ties go to the smaller coupon id.
fn best_for_line<'a>(
    coupons: &'a [Coupon],
    kind: CouponKind,
    value: Option<&str>,
    amount: Money,
) -> Option<(&'a Coupon, Money)> {
    coupons
        .iter()
        .filter(|c| targets(c, kind, value) && meets_minimum(c, amount))
        .map(|c| (c, coupon_discount(c, amount)))
        .filter(|(_, d)| *d > Money::ZERO)
        .min_by(|(a, da), (b, db)| db.cmp(da).then(a.id.cmp(&b.id)))
}

/// Prices a cart: `lines` in cart order (first added first), `coupons` applied to the cart.
///
/// Per line: the best category coupon for the line's category, unless that category was
/// already discounted on an earlier line (each category at most once per order); otherwise
/// the best brand coupon; at most one coupon per line. Then one frontstore coupon on
/// (subtotal − line discounts): the first by discount value descending (ties by id) whose
/// minimum is met and whose discount is > 0.
pub fn price_cart(lines: &[PricedLine], coupons: &[Coupon]) -> CartSummary {
    let subtotal: Money = lines.iter().map(PricedLine::amount).sum();
    let mut item_discounts = Vec::new();
    let mut used_categories: Vec<String> = Vec::new();
    for line in lines {
        let amount = line.amount();
        let category_key = line.category.trim().to_lowercase();
        let category = if used_categories.contains(&category_key) {
            None
        } else {
            best_for_line(coupons, CouponKind::Category, Some(&line.category), amount)
        };
        let chosen = match category {
            Some(found) => {
                used_categories.push(category_key);
                Some(found)
            }
            None => best_for_line(coupons, CouponKind::Brand, line.brand.as_deref(), amount),
        };
        if let Some((coupon, discount)) = chosen {
            item_discounts.push(ItemDiscount {
                product_id: line.product_id,
                coupon_id: coupon.id,
                amount: discount,
            });
        }
    }
    let line_discounts: Money = item_discounts.iter().map(|d| d.amount).sum();
    let remaining = subtotal - line_discounts;
    let mut frontstore: Vec<&Coupon> = coupons
        .iter()
        .filter(|c| c.kind == CouponKind::Frontstore)
        .collect();
    frontstore.sort_by(|a, b| {
        b.discount_value
            .cmp(&a.discount_value)
            .then(a.id.cmp(&b.id))
    });
    let (frontstore_coupon_id, frontstore_discount) = frontstore
        .into_iter()
        .filter(|c| meets_minimum(c, remaining))
        .map(|c| (c.id, coupon_discount(c, remaining)))
        .find(|(_, d)| *d > Money::ZERO)
        .map_or((None, Money::ZERO), |(id, d)| (Some(id), d));
    let discount_total = line_discounts + frontstore_discount;
    CartSummary {
        subtotal,
        item_discounts,
        frontstore_discount,
        frontstore_coupon_id,
        discount_total,
        final_total: (subtotal - discount_total).max(Money::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn coupon(
        n: u128,
        kind: CouponKind,
        target: Option<&str>,
        ty: DiscountType,
        value: i64,
        min: Option<i64>,
        cap: Option<i64>,
    ) -> Coupon {
        Coupon {
            id: id(n),
            code: format!("C{n}"),
            kind,
            discount_details: String::new(),
            category_or_brand: target.map(str::to_string),
            discount_type: ty,
            discount_value: Money(value),
            min_purchase_amount: min.map(Money),
            max_discount: cap.map(Money),
            expiration_date: None,
            is_active: true,
        }
    }

    fn line(n: u128, category: &str, brand: Option<&str>, price: i64, qty: i64) -> PricedLine {
        PricedLine {
            product_id: id(1000 + n),
            category: category.to_string(),
            brand: brand.map(str::to_string),
            unit_price: Money(price),
            quantity: qty,
        }
    }

    use CouponKind::{Brand, Category, Frontstore};
    use DiscountType::{Bogo, Fixed, FreeShipping, Percent};

    #[test]
    fn targets_match_ignoring_case_and_spaces() {
        assert!(same_ignoring_case("Dairy", "dAIRY"));
        assert!(!same_ignoring_case("Dairy", "Dairy & Eggs"));
        assert!(same_ignoring_case("CAFÉ", "café"));
        assert!(!same_ignoring_case("CAFÉ", "cafe"));
        let c = coupon(
            1,
            Category,
            Some("  Fresh Produce "),
            Percent,
            1000,
            None,
            None,
        );
        assert!(targets(&c, Category, Some("fresh produce")));
        assert!(!targets(&c, Brand, Some("fresh produce")));
    }

    #[test]
    fn coupon_discount_table() {
        // (type, value cents, cap, amount cents, expected cents)
        let cases: &[(DiscountType, i64, Option<i64>, i64, i64)] = &[
            (Percent, 2000, None, 1000, 200),       // 20% of 10.00
            (Percent, 1500, None, 333, 50),         // 15% of 3.33 = 0.4995 → 0.50
            (Percent, 1000, None, 5, 1),            // 10% of 0.05 = 0.005 → 0.01 (half up)
            (Percent, 1000, None, 4, 0),            // 0.004 → 0.00
            (Percent, 5000, Some(300), 1000, 300),  // capped at 3.00
            (Percent, 5000, Some(0), 1000, 500),    // cap 0 means no cap
            (Percent, 2500, Some(1000), 1000, 250), // cap not reached
            (Fixed, 500, None, 1200, 500),          // 5.00 off
            (Fixed, 500, None, 300, 300),           // at most the amount
            (Bogo, 10000, None, 1000, 500),         // half price on the pair
            (Bogo, 5000, None, 333, 83),            // 1.665 × 0.5 = 0.8325 → 0.83
            (Bogo, 5000, None, 335, 84),            // 0.8375 → 0.84
            (FreeShipping, 999, None, 5000, 0),     // nothing off goods
            (Percent, 2000, None, 0, 0),            // nothing to discount
            (Percent, 15000, None, 1000, 1000),     // never more than the amount
        ];
        for (i, (ty, value, cap, amount, want)) in cases.iter().enumerate() {
            let c = coupon(1, Frontstore, None, *ty, *value, None, *cap);
            assert_eq!(
                coupon_discount(&c, Money(*amount)),
                Money(*want),
                "case {i}: {ty:?} {value} cap {cap:?} on {amount}"
            );
        }
    }

    #[test]
    fn empty_cart_prices_to_zero() {
        let s = price_cart(&[], &[coupon(1, Frontstore, None, Fixed, 500, None, None)]);
        assert_eq!(s.subtotal, Money::ZERO);
        assert_eq!(s.final_total, Money::ZERO);
        assert!(s.item_discounts.is_empty());
        assert_eq!(s.frontstore_coupon_id, None);
    }

    #[test]
    fn price_cart_table() {
        struct Case {
            name: &'static str,
            lines: Vec<PricedLine>,
            coupons: Vec<Coupon>,
            // (line index, coupon n, discount cents)
            items: Vec<(usize, u128, i64)>,
            frontstore: Option<(u128, i64)>,
            subtotal: i64,
            final_total: i64,
        }
        let cases = vec![
            Case {
                name: "category match is case-insensitive",
                lines: vec![line(1, "Vitamins", Some("Acme"), 1000, 2)],
                coupons: vec![coupon(
                    1,
                    Category,
                    Some("vitamins"),
                    Percent,
                    1000,
                    None,
                    None,
                )],
                items: vec![(0, 1, 200)],
                frontstore: None,
                subtotal: 2000,
                final_total: 1800,
            },
            Case {
                name: "best category coupon wins, tie goes to smaller id",
                lines: vec![line(1, "Snacks", None, 1000, 1)],
                coupons: vec![
                    coupon(3, Category, Some("Snacks"), Fixed, 200, None, None),
                    coupon(2, Category, Some("Snacks"), Percent, 2000, None, None),
                    coupon(4, Category, Some("Snacks"), Fixed, 100, None, None),
                ],
                items: vec![(0, 2, 200)],
                frontstore: None,
                subtotal: 1000,
                final_total: 800,
            },
            Case {
                name: "each category at most once per order; later line falls back to brand",
                lines: vec![
                    line(1, "Snacks", Some("Crunch"), 500, 1),
                    line(2, "snacks", Some("Crunch"), 800, 1),
                    line(3, "SNACKS", Some("Other"), 900, 1),
                ],
                coupons: vec![
                    coupon(1, Category, Some("Snacks"), Percent, 5000, None, None),
                    coupon(2, Brand, Some("crunch"), Fixed, 100, None, None),
                ],
                items: vec![(0, 1, 250), (1, 2, 100)],
                frontstore: None,
                subtotal: 2200,
                final_total: 1850,
            },
            Case {
                name: "brand fallback when no category coupon matches",
                lines: vec![line(1, "Dairy", Some("MooCo"), 450, 2)],
                coupons: vec![
                    coupon(1, Category, Some("Bakery"), Percent, 5000, None, None),
                    coupon(2, Brand, Some("MOOCO"), Bogo, 10000, None, None),
                ],
                items: vec![(0, 2, 450)],
                frontstore: None,
                subtotal: 900,
                final_total: 450,
            },
            Case {
                name: "line minimum not met: category skipped, brand used",
                lines: vec![line(1, "Dairy", Some("MooCo"), 300, 1)],
                coupons: vec![
                    coupon(1, Category, Some("Dairy"), Fixed, 200, Some(500), None),
                    coupon(2, Brand, Some("MooCo"), Fixed, 50, Some(300), None),
                ],
                items: vec![(0, 2, 50)],
                frontstore: None,
                subtotal: 300,
                final_total: 250,
            },
            Case {
                name: "zero-discount category coupon does not block the brand coupon",
                lines: vec![line(1, "Dairy", Some("MooCo"), 300, 1)],
                coupons: vec![
                    coupon(1, Category, Some("Dairy"), FreeShipping, 0, None, None),
                    coupon(2, Brand, Some("MooCo"), Fixed, 50, None, None),
                ],
                items: vec![(0, 2, 50)],
                frontstore: None,
                subtotal: 300,
                final_total: 250,
            },
            Case {
                name: "frontstore: highest value first, on subtotal minus line discounts",
                lines: vec![line(1, "Dairy", None, 1000, 3)],
                coupons: vec![
                    coupon(1, Category, Some("Dairy"), Fixed, 500, None, None),
                    // 10% with min 30: remaining is 25 → skipped although value is highest.
                    coupon(2, Frontstore, None, Percent, 1000, Some(3000), None),
                    coupon(3, Frontstore, None, Fixed, 300, Some(2000), None),
                    coupon(4, Frontstore, None, Fixed, 200, None, None),
                ],
                items: vec![(0, 1, 500)],
                frontstore: Some((3, 300)),
                subtotal: 3000,
                final_total: 2200,
            },
            Case {
                name: "frontstore with zero discount is passed over; ties by id",
                lines: vec![line(1, "Dairy", None, 1000, 1)],
                coupons: vec![
                    coupon(9, Frontstore, None, FreeShipping, 5000, None, None),
                    coupon(6, Frontstore, None, Fixed, 100, None, None),
                    coupon(5, Frontstore, None, Fixed, 100, None, None),
                ],
                items: vec![],
                frontstore: Some((5, 100)),
                subtotal: 1000,
                final_total: 900,
            },
            Case {
                name: "percent frontstore is capped and rounded",
                lines: vec![line(1, "Dairy", None, 333, 3)],
                coupons: vec![coupon(1, Frontstore, None, Percent, 1500, None, Some(100))],
                items: vec![],
                frontstore: Some((1, 100)),
                subtotal: 999,
                final_total: 899,
            },
            Case {
                name: "discounts never push the total below zero",
                lines: vec![line(1, "Dairy", Some("B"), 300, 1)],
                coupons: vec![
                    coupon(1, Brand, Some("B"), Fixed, 1000, None, None),
                    coupon(2, Frontstore, None, Fixed, 1000, None, None),
                ],
                items: vec![(0, 1, 300)],
                frontstore: None,
                subtotal: 300,
                final_total: 0,
            },
            Case {
                name: "line without brand gets no brand coupon",
                lines: vec![line(1, "Dairy", None, 300, 1)],
                coupons: vec![coupon(1, Brand, Some("B"), Fixed, 100, None, None)],
                items: vec![],
                frontstore: None,
                subtotal: 300,
                final_total: 300,
            },
        ];
        for case in cases {
            let s = price_cart(&case.lines, &case.coupons);
            let items: Vec<(usize, u128, i64)> = s
                .item_discounts
                .iter()
                .map(|d| {
                    let idx = case
                        .lines
                        .iter()
                        .position(|l| l.product_id == d.product_id)
                        .unwrap();
                    (idx, d.coupon_id.as_u128(), d.amount.as_cents())
                })
                .collect();
            assert_eq!(items, case.items, "{}", case.name);
            assert_eq!(
                s.frontstore_coupon_id
                    .map(|c| (c.as_u128(), s.frontstore_discount.as_cents())),
                case.frontstore,
                "{}",
                case.name
            );
            assert_eq!(s.subtotal, Money(case.subtotal), "{}", case.name);
            assert_eq!(s.final_total, Money(case.final_total), "{}", case.name);
            let line_sum: Money = s.item_discounts.iter().map(|d| d.amount).sum();
            assert_eq!(
                s.discount_total,
                line_sum + s.frontstore_discount,
                "{}",
                case.name
            );
        }
    }
}
