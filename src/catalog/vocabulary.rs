//! The one category vocabulary of shopsim.
//!
//! The catalog generator, CSV catalogs and the persona sets (behaviour scripts read
//! [`category_names`]) all use these names, so a persona's preferred categories always match
//! product categories (the original simulation's did not). Each category carries what the
//! generator needs to make believable products: a price range, product nouns, pack sizes and the
//! brands that sell in it.

use crate::money::Money;

/// Which side of the shop a category belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Department {
    /// Pharmacy and health & beauty aisles.
    Pharmacy,
    /// Grocery and household aisles.
    Grocery,
}

/// One category of the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryInfo {
    /// Canonical name, as stored in `products.category`.
    pub name: &'static str,
    /// Pharmacy or grocery.
    pub department: Department,
    /// Cheapest typical shelf price.
    pub price_min: Money,
    /// Dearest typical shelf price.
    pub price_max: Money,
    /// Typical product nouns ("Ibuprofen Tablets").
    pub nouns: &'static [&'static str],
    /// Typical pack sizes ("100 ct").
    pub sizes: &'static [&'static str],
    /// Brands that sell in this category (national brands and store brands).
    pub brands: &'static [&'static str],
}

/// The shop's own brand for pharmacy and health & beauty products.
pub const STORE_BRAND_PHARMACY: &str = "HomeWell";
/// The shop's own brand for grocery and household products.
pub const STORE_BRAND_GROCERY: &str = "Everyday Basics";

const fn cents(c: i64) -> Money {
    Money::cents(c)
}

static CATEGORIES: &[CategoryInfo] = &[
    CategoryInfo {
        name: "Pain Relief",
        department: Department::Pharmacy,
        price_min: cents(399),
        price_max: cents(1899),
        nouns: &[
            "Ibuprofen Tablets",
            "Acetaminophen Caplets",
            "Naproxen Sodium Tablets",
            "Aspirin Low Dose",
            "Migraine Relief Caplets",
            "Muscle Rub Cream",
            "Pain Relief Patches",
            "Back Pain Gel",
        ],
        sizes: &["24 ct", "50 ct", "100 ct", "200 ct", "3 oz", "5 ct"],
        brands: &[
            "Nuvia",
            "Relivex",
            "Calmera",
            "Dr. Harlow",
            STORE_BRAND_PHARMACY,
        ],
    },
    CategoryInfo {
        name: "Cold & Flu",
        department: Department::Pharmacy,
        price_min: cents(499),
        price_max: cents(1999),
        nouns: &[
            "Daytime Cold & Flu Softgels",
            "Nighttime Cold Relief Liquid",
            "Cough Syrup",
            "Sore Throat Lozenges",
            "Nasal Decongestant Spray",
            "Chest Rub",
            "Zinc Cold Remedy Tablets",
            "Severe Cold Powder Packets",
        ],
        sizes: &["4 fl oz", "8 fl oz", "12 ct", "24 ct", "30 ct", "1 oz"],
        brands: &[
            "Nuvia",
            "Relivex",
            "Theraflo Labs",
            "Dr. Harlow",
            STORE_BRAND_PHARMACY,
        ],
    },
    CategoryInfo {
        name: "Allergy",
        department: Department::Pharmacy,
        price_min: cents(599),
        price_max: cents(2999),
        nouns: &[
            "Loratadine Tablets",
            "Cetirizine Tablets",
            "Fexofenadine Tablets",
            "Allergy Eye Drops",
            "Nasal Allergy Spray",
            "Diphenhydramine Capsules",
            "Children's Allergy Syrup",
        ],
        sizes: &["10 ct", "30 ct", "45 ct", "70 ct", "0.5 fl oz", "4 fl oz"],
        brands: &["Nuvia", "Clearbreeze", "Dr. Harlow", STORE_BRAND_PHARMACY],
    },
    CategoryInfo {
        name: "Vitamins & Supplements",
        department: Department::Pharmacy,
        price_min: cents(599),
        price_max: cents(3499),
        nouns: &[
            "Multivitamin Tablets",
            "Vitamin D3 Softgels",
            "Vitamin C Gummies",
            "Fish Oil Omega-3",
            "Magnesium Citrate",
            "Probiotic Capsules",
            "Calcium + D Tablets",
            "Melatonin Gummies",
            "B-Complex Caplets",
        ],
        sizes: &["30 ct", "60 ct", "90 ct", "120 ct", "180 ct"],
        brands: &[
            "VitaCore",
            "Natura Peak",
            "Sunleaf",
            "Vitalis",
            STORE_BRAND_PHARMACY,
        ],
    },
    CategoryInfo {
        name: "First Aid",
        department: Department::Pharmacy,
        price_min: cents(249),
        price_max: cents(2499),
        nouns: &[
            "Adhesive Bandages",
            "Antibiotic Ointment",
            "Gauze Pads",
            "Medical Tape",
            "Hydrogen Peroxide",
            "First Aid Kit",
            "Instant Cold Pack",
            "Elastic Bandage Wrap",
        ],
        sizes: &["1 ct", "10 ct", "30 ct", "60 ct", "1 oz", "16 fl oz"],
        brands: &["MediGuard", "Dr. Harlow", "SafeStep", STORE_BRAND_PHARMACY],
    },
    CategoryInfo {
        name: "Oral Care",
        department: Department::Pharmacy,
        price_min: cents(199),
        price_max: cents(1499),
        nouns: &[
            "Whitening Toothpaste",
            "Sensitive Toothpaste",
            "Soft Toothbrush",
            "Antiseptic Mouthwash",
            "Waxed Dental Floss",
            "Whitening Strips",
            "Kids Toothpaste",
        ],
        sizes: &[
            "1 ct",
            "2 pk",
            "4 pk",
            "4 oz",
            "6 oz",
            "16.9 fl oz",
            "50 yd",
        ],
        brands: &[
            "Brightwell",
            "Smilecraft",
            "DentaPure",
            STORE_BRAND_PHARMACY,
        ],
    },
    CategoryInfo {
        name: "Skin Care",
        department: Department::Pharmacy,
        price_min: cents(399),
        price_max: cents(2999),
        nouns: &[
            "Daily Moisturizing Lotion",
            "Foaming Facial Cleanser",
            "SPF 30 Sunscreen",
            "Hydrating Night Cream",
            "Acne Spot Treatment",
            "Hand Cream",
            "Lip Balm",
        ],
        sizes: &[
            "0.15 oz", "1.7 oz", "3 oz", "6 fl oz", "8 fl oz", "16 fl oz",
        ],
        brands: &["Purelle", "Dermaline", "Sunleaf", STORE_BRAND_PHARMACY],
    },
    CategoryInfo {
        name: "Hair Care",
        department: Department::Pharmacy,
        price_min: cents(299),
        price_max: cents(1999),
        nouns: &[
            "Moisture Shampoo",
            "Volumizing Conditioner",
            "Dry Shampoo",
            "Styling Gel",
            "Anti-Dandruff Shampoo",
            "Leave-In Conditioner",
            "Hair Spray",
        ],
        sizes: &["5 oz", "8 oz", "12 fl oz", "20 fl oz", "28 fl oz"],
        brands: &["Purelle", "Silkora", "Maneline", STORE_BRAND_PHARMACY],
    },
    CategoryInfo {
        name: "Personal Care",
        department: Department::Pharmacy,
        price_min: cents(199),
        price_max: cents(1599),
        nouns: &[
            "Antiperspirant Deodorant",
            "Body Wash",
            "Bar Soap",
            "Disposable Razors",
            "Shaving Cream",
            "Cotton Swabs",
            "Hand Sanitizer",
        ],
        sizes: &["2.6 oz", "3 pk", "4 pk", "8 fl oz", "18 fl oz", "500 ct"],
        brands: &["Brightwell", "Purelle", "Freshfield", STORE_BRAND_PHARMACY],
    },
    CategoryInfo {
        name: "Baby Care",
        department: Department::Pharmacy,
        price_min: cents(299),
        price_max: cents(4499),
        nouns: &[
            "Diapers Size 3",
            "Baby Wipes",
            "Diaper Rash Cream",
            "Baby Shampoo",
            "Infant Formula",
            "Baby Lotion",
            "Teething Gel",
        ],
        sizes: &["1 ct", "2 oz", "13 oz", "15 fl oz", "72 ct", "84 ct"],
        brands: &["Sproutlings", "Little Oak", STORE_BRAND_PHARMACY],
    },
    CategoryInfo {
        name: "Beauty & Cosmetics",
        department: Department::Pharmacy,
        price_min: cents(399),
        price_max: cents(2499),
        nouns: &[
            "Volumizing Mascara",
            "Liquid Foundation",
            "Matte Lipstick",
            "Eyeshadow Palette",
            "Nail Polish",
            "Makeup Remover Wipes",
            "Pressed Powder",
        ],
        sizes: &["0.3 oz", "0.5 fl oz", "1 fl oz", "1 ct", "25 ct"],
        brands: &["Lumiere Lane", "Velvetta", "Purelle", "Rosewood Beauty"],
    },
    CategoryInfo {
        name: "Household Cleaning",
        department: Department::Grocery,
        price_min: cents(199),
        price_max: cents(1999),
        nouns: &[
            "All-Purpose Cleaner",
            "Dish Soap",
            "Laundry Detergent",
            "Disinfecting Wipes",
            "Paper Towels",
            "Trash Bags",
            "Glass Cleaner",
            "Sponges",
        ],
        sizes: &["3 ct", "6 rolls", "24 fl oz", "32 fl oz", "75 ct", "92 oz"],
        brands: &[
            "CleanCrest",
            "Sparkhaven",
            "Greenleaf Home",
            STORE_BRAND_GROCERY,
        ],
    },
    CategoryInfo {
        name: "Snacks",
        department: Department::Grocery,
        price_min: cents(149),
        price_max: cents(699),
        nouns: &[
            "Sea Salt Potato Chips",
            "Tortilla Chips",
            "Pretzel Twists",
            "Granola Bars",
            "Trail Mix",
            "Microwave Popcorn",
            "Cheese Crackers",
            "Chocolate Chip Cookies",
        ],
        sizes: &["1.5 oz", "6 ct", "7 oz", "10 oz", "12 oz", "16 oz"],
        brands: &[
            "Crunchville",
            "Golden Hearth",
            "Trailside",
            "Happy Harvest",
            STORE_BRAND_GROCERY,
        ],
    },
    CategoryInfo {
        name: "Beverages",
        department: Department::Grocery,
        price_min: cents(99),
        price_max: cents(1299),
        nouns: &[
            "Sparkling Water",
            "Orange Juice",
            "Cold Brew Coffee",
            "Ground Coffee",
            "Green Tea Bags",
            "Sports Drink",
            "Cola",
            "Spring Water",
        ],
        sizes: &[
            "12 fl oz", "20 fl oz", "52 fl oz", "12 oz", "20 ct", "12 pk", "24 pk",
        ],
        brands: &[
            "Brookfield",
            "Sunrise Grove",
            "Peak Brew",
            "Crystal Falls",
            STORE_BRAND_GROCERY,
        ],
    },
    CategoryInfo {
        name: "Dairy & Eggs",
        department: Department::Grocery,
        price_min: cents(129),
        price_max: cents(799),
        nouns: &[
            "Whole Milk",
            "2% Reduced Fat Milk",
            "Large Eggs",
            "Greek Yogurt",
            "Cheddar Cheese",
            "Salted Butter",
            "Cottage Cheese",
            "Oat Milk",
        ],
        sizes: &[
            "5.3 oz",
            "8 oz",
            "16 oz",
            "half gallon",
            "1 gallon",
            "12 ct",
            "18 ct",
        ],
        brands: &[
            "Fieldstone Farms",
            "Meadowbrook",
            "Clover Valley",
            STORE_BRAND_GROCERY,
        ],
    },
    CategoryInfo {
        name: "Bakery",
        department: Department::Grocery,
        price_min: cents(199),
        price_max: cents(799),
        nouns: &[
            "Whole Wheat Bread",
            "Sourdough Loaf",
            "Plain Bagels",
            "Blueberry Muffins",
            "Flour Tortillas",
            "Hamburger Buns",
            "Croissants",
        ],
        sizes: &["4 ct", "6 ct", "8 ct", "10 ct", "20 oz", "24 oz"],
        brands: &[
            "Golden Hearth",
            "Fieldstone Farms",
            "Old Mill",
            STORE_BRAND_GROCERY,
        ],
    },
    CategoryInfo {
        name: "Produce",
        department: Department::Grocery,
        price_min: cents(99),
        price_max: cents(599),
        nouns: &[
            "Bananas",
            "Gala Apples",
            "Baby Spinach",
            "Strawberries",
            "Avocados",
            "Baby Carrots",
            "Yellow Onions",
            "Romaine Hearts",
        ],
        sizes: &["1 lb", "2 lb", "3 lb", "5 oz", "16 oz", "4 ct", "3 ct"],
        brands: &[
            "Fieldstone Farms",
            "Green Acre",
            "Sunrise Grove",
            STORE_BRAND_GROCERY,
        ],
    },
    CategoryInfo {
        name: "Frozen Foods",
        department: Department::Grocery,
        price_min: cents(199),
        price_max: cents(1099),
        nouns: &[
            "Pepperoni Pizza",
            "Mixed Vegetables",
            "Vanilla Ice Cream",
            "Chicken Nuggets",
            "Breakfast Burritos",
            "Fish Fillets",
            "Waffles",
        ],
        sizes: &["10 ct", "12 oz", "16 oz", "24 oz", "1.5 qt", "2 lb"],
        brands: &[
            "Polar Pantry",
            "Frostline",
            "Happy Harvest",
            STORE_BRAND_GROCERY,
        ],
    },
    CategoryInfo {
        name: "Pantry Staples",
        department: Department::Grocery,
        price_min: cents(99),
        price_max: cents(1299),
        nouns: &[
            "Spaghetti",
            "Long Grain White Rice",
            "Marinara Sauce",
            "Black Beans",
            "Creamy Peanut Butter",
            "Extra Virgin Olive Oil",
            "All-Purpose Flour",
            "Chicken Broth",
            "Rolled Oats",
        ],
        sizes: &[
            "15 oz",
            "16 oz",
            "24 oz",
            "32 oz",
            "2 lb",
            "5 lb",
            "16.9 fl oz",
        ],
        brands: &[
            "Golden Hearth",
            "Old Mill",
            "Casa Bella",
            "Happy Harvest",
            STORE_BRAND_GROCERY,
        ],
    },
    CategoryInfo {
        name: "Pet Care",
        department: Department::Grocery,
        price_min: cents(199),
        price_max: cents(3999),
        nouns: &[
            "Dry Dog Food",
            "Wet Cat Food",
            "Clumping Cat Litter",
            "Dog Treats",
            "Cat Treats",
            "Flea & Tick Shampoo",
        ],
        sizes: &["3 oz", "6 oz", "12 ct", "5 lb", "14 lb", "20 lb"],
        brands: &[
            "Pawsome",
            "Whisker & Tail",
            "TrueBreed",
            STORE_BRAND_GROCERY,
        ],
    },
];

/// Every category of the vocabulary, in a fixed order.
pub fn categories() -> &'static [CategoryInfo] {
    CATEGORIES
}

/// The canonical names of every category, in the order of [`categories`].
pub fn category_names() -> Vec<&'static str> {
    CATEGORIES.iter().map(|c| c.name).collect()
}

/// The category called `name`, ignoring ASCII case and surrounding whitespace (pricing matches
/// categories case-insensitively, so the vocabulary does too).
pub fn category(name: &str) -> Option<&'static CategoryInfo> {
    let name = name.trim();
    CATEGORIES
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
}

/// True when `name` is a category of the vocabulary (ignoring case).
pub fn is_category(name: &str) -> bool {
    category(name).is_some()
}

/// Every brand that sells in at least one category, each once, sorted.
pub fn brands() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = CATEGORIES
        .iter()
        .flat_map(|c| c.brands.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// True for the shop's own brands.
pub fn is_store_brand(brand: &str) -> bool {
    brand == STORE_BRAND_PHARMACY || brand == STORE_BRAND_GROCERY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_rich_and_consistent() {
        let cats = categories();
        assert!(cats.len() >= 18, "{} categories", cats.len());
        let mut names = category_names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cats.len(), "category names must be unique");
        assert!(brands().len() >= 40, "{} brands", brands().len());
        for c in cats {
            assert!(c.price_min.as_cents() > 0, "{}", c.name);
            assert!(c.price_max > c.price_min, "{}", c.name);
            assert!(c.nouns.len() >= 5, "{}", c.name);
            assert!(c.sizes.len() >= 4, "{}", c.name);
            assert!(c.brands.len() >= 3, "{}", c.name);
            assert!(
                !c.name.contains(','),
                "{} (persona lists are comma-separated)",
                c.name
            );
        }
        assert!(cats.iter().any(|c| c.department == Department::Pharmacy));
        assert!(cats.iter().any(|c| c.department == Department::Grocery));
        // Some brands span several categories, and both store brands exist.
        let spanning = brands()
            .into_iter()
            .filter(|b| cats.iter().filter(|c| c.brands.contains(b)).count() >= 2)
            .count();
        assert!(spanning >= 5, "{spanning} brands span several categories");
        assert!(brands().contains(&STORE_BRAND_PHARMACY));
        assert!(brands().contains(&STORE_BRAND_GROCERY));
    }

    #[test]
    fn lookup_ignores_case() {
        assert!(is_category("Pain Relief"));
        assert!(is_category("pain relief"));
        assert!(is_category(" Cold & Flu "));
        assert_eq!(
            category("DAIRY & EGGS").map(|c| c.name),
            Some("Dairy & Eggs")
        );
        assert!(!is_category("Electronics"));
        assert!(!is_category(""));
    }
}
