//! Product catalogs from CSV files (`shopsim seed --catalog FILE.csv`).
//!
//! # Format
//!
//! A UTF-8 CSV file with a header row. Columns may come in any order; header names are matched
//! ignoring case and surrounding spaces.
//!
//! | column | required | meaning |
//! |---|---|---|
//! | `sku` | yes | product code, unique in the file (e.g. `SKU-00001`) |
//! | `name` | yes | display name |
//! | `category` | yes | one of shopsim's categories (see below), any letter case |
//! | `brand` | yes | brand name |
//! | `price` | yes | unit price, at most two decimals, greater than zero (`4.99`; a leading `$` is allowed) |
//! | `description` | no | text (default empty) |
//! | `rating` | no | average rating, 0 to 5 (default 0: not rated) |
//! | `review_count` | no | whole number ≥ 0 (default 0) |
//! | `in_stock` | no | `true`/`false`, `yes`/`no` or `1`/`0` (default true) |
//!
//! Any other column is an error (it is most likely a misspelt one). Empty optional cells take
//! the default. The category must be one of the shared vocabulary
//! ([`category_names`](super::vocabulary::category_names)): Pain Relief, Cold & Flu, Allergy,
//! Vitamins & Supplements, First Aid, Oral Care, Skin Care, Hair Care, Personal Care, Baby Care,
//! Beauty & Cosmetics, Household Cleaning, Snacks, Beverages, Dairy & Eggs, Bakery, Produce,
//! Frozen Foods, Pantry Staples, Pet Care. Unknown categories are refused rather than
//! accepted, because persona sets use the same names and a product in an unknown category
//! would never be preferred by anyone. Categories are stored with the vocabulary's spelling.
//!
//! Example:
//!
//! ```csv
//! sku,name,category,brand,price,rating
//! A-100,Nuvia Ibuprofen Tablets 100 ct,Pain Relief,Nuvia,8.99,4.6
//! A-101,Fieldstone Farms Whole Milk 1 gallon,Dairy & Eggs,Fieldstone Farms,4.29,
//! ```
//!
//! Product ids are `ids::stable_uuid(seed, "product", sku)`, so the same file and seed give the
//! same ids. Stores, inventory and coupons are still generated from the seed around the file's
//! products; category and brand coupons target the file's categories and brands.
//!
//! Every error names the file, the line and, where it applies, the column.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::generate::{CatalogSpec, SpecError, catalog_around};
use super::model::{Catalog, Product};
use super::vocabulary;
use crate::ids;
use crate::money::Money;

/// Required columns.
pub const REQUIRED_COLUMNS: &[&str] = &["sku", "name", "category", "brand", "price"];
/// Optional columns.
pub const OPTIONAL_COLUMNS: &[&str] = &["description", "rating", "review_count", "in_stock"];

/// The largest price a `DECIMAL(10,2)` column holds.
const MAX_PRICE_CENTS: i64 = 9_999_999_999;

/// A CSV catalog that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CsvCatalogError {
    /// The file could not be opened or read.
    #[error("cannot read catalog file {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Something in the file is wrong.
    #[error("{file}:{line}: {}{message}", .column.as_ref().map(|c| format!("column `{c}`: ")).unwrap_or_default())]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line number.
        line: u64,
        /// The column, when the problem is in one cell.
        column: Option<String>,
        /// What is wrong and what to do.
        message: String,
    },
    /// The products are fine but the rest of the catalog cannot be generated.
    #[error("catalog file {file}: {source}")]
    Spec {
        /// The file.
        file: String,
        /// The cause.
        source: SpecError,
    },
}

/// Reads the products of a CSV file (see the module docs for the format).
pub fn read_products(path: &Path, seed: u64) -> Result<Vec<Product>, CsvCatalogError> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| CsvCatalogError::Io {
        file: file.clone(),
        source,
    })?;
    parse_products(f, &file, seed)
}

/// A whole catalog: products from the CSV file, stores, inventory and coupons from the seed.
pub fn catalog_from_csv(
    path: &Path,
    seed: u64,
    spec: &CatalogSpec,
) -> Result<Catalog, CsvCatalogError> {
    let products = read_products(path, seed)?;
    catalog_around(seed, spec, products).map_err(|source| CsvCatalogError::Spec {
        file: path.display().to_string(),
        source,
    })
}

/// Parses products from CSV text. `source_name` names the input in errors.
pub fn parse_products(
    input: impl Read,
    source_name: &str,
    seed: u64,
) -> Result<Vec<Product>, CsvCatalogError> {
    let err = |line: u64, column: Option<&str>, message: String| CsvCatalogError::Invalid {
        file: source_name.to_string(),
        line,
        column: column.map(str::to_string),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| csv_err(source_name, &e, 1))?
        .clone();
    if headers.iter().all(str::is_empty) {
        return Err(err(
            1,
            None,
            format!(
                "the file is empty; expected a header row with the columns {}",
                REQUIRED_COLUMNS.join(",")
            ),
        ));
    }
    // Column name -> index.
    let mut index: HashMap<&'static str, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let name = h.to_ascii_lowercase();
        let known = REQUIRED_COLUMNS
            .iter()
            .chain(OPTIONAL_COLUMNS)
            .find(|c| **c == name);
        match known {
            Some(&c) => {
                if index.insert(c, i).is_some() {
                    return Err(err(
                        1,
                        Some(h),
                        "appears twice in the header; keep one".into(),
                    ));
                }
            }
            None => {
                return Err(err(
                    1,
                    Some(h),
                    format!(
                        "unknown column (column {}); allowed columns are {} (required) and {} (optional)",
                        i + 1,
                        REQUIRED_COLUMNS.join(", "),
                        OPTIONAL_COLUMNS.join(", ")
                    ),
                ));
            }
        }
    }
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !index.contains_key(c))
        .collect();
    if !missing.is_empty() {
        return Err(err(
            1,
            None,
            format!(
                "the header lacks the required column(s) {}; the header must name {}",
                missing.join(", "),
                REQUIRED_COLUMNS.join(",")
            ),
        ));
    }

    let mut products = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for result in reader.records() {
        let record = result.map_err(|e| csv_err(source_name, &e, 0))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(str::is_empty) {
            continue; // blank line
        }
        let cell = |c: &str| index.get(c).and_then(|&i| record.get(i)).unwrap_or("");
        let required = |c: &'static str| -> Result<String, CsvCatalogError> {
            let v = cell(c);
            if v.is_empty() {
                Err(err(
                    line,
                    Some(c),
                    "is empty; every product needs one".into(),
                ))
            } else {
                Ok(v.to_string())
            }
        };
        let sku = required("sku")?;
        if let Some(first) = seen.insert(sku.clone(), line) {
            return Err(err(
                line,
                Some("sku"),
                format!("`{sku}` is already used on line {first}; SKUs must be unique"),
            ));
        }
        let name = required("name")?;
        let category_raw = required("category")?;
        let category = vocabulary::category(&category_raw).ok_or_else(|| {
            err(
                line,
                Some("category"),
                format!(
                    "`{category_raw}` is not a shopsim category; use one of: {}",
                    vocabulary::category_names().join(", ")
                ),
            )
        })?;
        let brand = required("brand")?;
        let price = parse_price(&required("price")?).map_err(|m| err(line, Some("price"), m))?;
        let rating = match cell("rating") {
            "" => 0.0,
            v => match v.parse::<f64>() {
                Ok(r) if (0.0..=5.0).contains(&r) => r,
                _ => {
                    return Err(err(
                        line,
                        Some("rating"),
                        format!("`{v}` is not a rating; use a number from 0 to 5"),
                    ));
                }
            },
        };
        let review_count = match cell("review_count") {
            "" => 0,
            v => match v.parse::<i64>() {
                Ok(n) if (0..=i64::from(i32::MAX)).contains(&n) => n,
                _ => {
                    return Err(err(
                        line,
                        Some("review_count"),
                        format!("`{v}` is not a review count; use a whole number of 0 or more"),
                    ));
                }
            },
        };
        let in_stock = match cell("in_stock").to_ascii_lowercase().as_str() {
            "" | "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            other => {
                return Err(err(
                    line,
                    Some("in_stock"),
                    format!("`{other}` is not a yes/no value; use true or false"),
                ));
            }
        };
        products.push(Product {
            id: ids::stable_uuid(seed, "product", &sku),
            sku,
            name,
            description: cell("description").to_string(),
            price,
            rating,
            review_count,
            category: category.name.to_string(),
            brand,
            in_stock,
        });
    }
    if products.is_empty() {
        return Err(err(
            1,
            None,
            "the file has a header but no products; add one product per line".into(),
        ));
    }
    Ok(products)
}

/// A price: positive, at most two decimals, within `DECIMAL(10,2)`.
fn parse_price(v: &str) -> Result<Money, String> {
    let bad = || {
        format!("`{v}` is not a price; write it like 4.99 (greater than 0, at most two decimals)")
    };
    let digits = v.trim().trim_start_matches('$');
    if digits
        .split_once('.')
        .is_some_and(|(_, frac)| frac.len() > 2)
    {
        return Err(bad());
    }
    let m: Money = digits.parse().map_err(|_| bad())?;
    if m.as_cents() <= 0 || m.as_cents() > MAX_PRICE_CENTS {
        return Err(bad());
    }
    Ok(m)
}

/// A CSV syntax error (e.g. a row with the wrong number of fields), with its line.
fn csv_err(file: &str, e: &csv::Error, fallback_line: u64) -> CsvCatalogError {
    let line = e.position().map(|p| p.line()).unwrap_or(fallback_line);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "this row has {len} field(s) but the header has {expected_len}; quote cells that contain commas"
        ),
        csv::ErrorKind::Utf8 { .. } => "the file is not valid UTF-8; save it as UTF-8".to_string(),
        _ => format!("cannot read this line as CSV: {e}"),
    };
    CsvCatalogError::Invalid {
        file: file.to_string(),
        line,
        column: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Product>, CsvCatalogError> {
        parse_products(text.as_bytes(), "cat.csv", 42)
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_required_and_optional_columns_in_any_order() {
        let p = parse(
            "Price,brand,SKU,category,name,rating,in_stock,review_count,description\n\
             4.99,Nuvia,A-1,pain relief,Nuvia Ibuprofen 50 ct,4.5,no,12,\"Tablets, coated\"\n\
             $12,Fieldstone Farms,A-2,Dairy & Eggs,Milk,,,,\n",
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].sku, "A-1");
        assert_eq!(p[0].price, Money::cents(499));
        assert_eq!(p[0].category, "Pain Relief", "canonical spelling");
        assert_eq!(p[0].rating, 4.5);
        assert_eq!(p[0].review_count, 12);
        assert!(!p[0].in_stock);
        assert_eq!(p[0].description, "Tablets, coated");
        assert_eq!(p[0].id, ids::stable_uuid(42, "product", "A-1"));
        assert_eq!(p[1].price, Money::cents(1200));
        assert!(p[1].in_stock);
        assert_eq!(p[1].rating, 0.0);
    }

    #[test]
    fn unknown_category_names_line_value_and_allowed_names() {
        let m = message(
            "sku,name,category,brand,price\nA-1,X,Snacks,B,1.00\nA-2,Y,Electronics,B,2.00\n",
        );
        assert!(m.starts_with("cat.csv:3: column `category`:"), "{m}");
        assert!(m.contains("`Electronics`"), "{m}");
        assert!(m.contains("Pain Relief") && m.contains("Pet Care"), "{m}");
    }

    #[test]
    fn bad_cells_are_reported_with_line_and_column() {
        let h = "sku,name,category,brand,price,rating\n";
        let m = message(&format!("{h}A-1,X,Snacks,B,4.999,\n"));
        assert!(m.starts_with("cat.csv:2: column `price`:"), "{m}");
        let m = message(&format!("{h}A-1,X,Snacks,B,-1,\n"));
        assert!(m.contains("column `price`"), "{m}");
        let m = message(&format!("{h}A-1,X,Snacks,B,abc,\n"));
        assert!(m.contains("`abc` is not a price"), "{m}");
        let m = message(&format!("{h}A-1,X,Snacks,B,1.00,7\n"));
        assert!(m.starts_with("cat.csv:2: column `rating`:"), "{m}");
        let m = message(&format!("{h}A-1,,Snacks,B,1.00,\n"));
        assert!(m.starts_with("cat.csv:2: column `name`: is empty"), "{m}");
        let m = message(&format!("{h}A-1,X,Snacks,B,1.00,\nA-1,Y,Snacks,B,1.00,\n"));
        assert!(m.starts_with("cat.csv:3: column `sku`:"), "{m}");
        assert!(m.contains("line 2"), "{m}");
        let m = message(&format!("{h}A-1,X,Snacks,B\n"));
        assert!(m.starts_with("cat.csv:2:"), "{m}");
        assert!(m.contains("4 field(s) but the header has 6"), "{m}");
    }

    #[test]
    fn header_problems_are_reported() {
        let m = message("sku,name,category,price\nA,B,Snacks,1\n");
        assert!(m.starts_with("cat.csv:1:"), "{m}");
        assert!(m.contains("brand"), "{m}");
        let m = message("sku,name,category,brand,price,colour\n");
        assert!(
            m.contains("column `colour`: unknown column (column 6)"),
            "{m}"
        );
        let m = message("");
        assert!(m.contains("empty"), "{m}");
        let m = message("sku,name,category,brand,price\n");
        assert!(m.contains("no products"), "{m}");
    }

    #[test]
    fn csv_catalog_gets_generated_stores_and_targeted_coupons() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.csv");
        std::fs::write(
            &path,
            "sku,name,category,brand,price\nB,Bread,Bakery,Old Mill,2.99\nA,Aspirin,Pain Relief,Acme,5.49\n",
        )
        .unwrap();
        let c = catalog_from_csv(&path, 3, &CatalogSpec::default()).unwrap();
        assert_eq!(c.products.len(), 2);
        assert_eq!(c.products[0].sku, "A", "canonical order");
        assert_eq!(c.stores.len(), 10);
        assert_eq!(c.inventory.len(), 20);
        for k in &c.coupons {
            if let Some(t) = &k.category_or_brand {
                assert!(
                    ["Bakery", "Pain Relief", "Old Mill", "Acme"].contains(&t.as_str()),
                    "{t}"
                );
            }
        }
        let missing = catalog_from_csv(&dir.path().join("nope.csv"), 3, &CatalogSpec::default())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.csv"), "{missing}");
    }
}
