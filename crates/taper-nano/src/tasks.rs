//! Synthetic arithmetic word problems: shopping, rates, percentages, unit
//! conversions and multi-step problems of two to four operations.
//!
//! Each problem has its text, the quantities restated (the model's reasoning
//! before the call), the calculator expression that solves it, and the answer as
//! the calculator prints it. The two splits share the cue vocabulary ("each",
//! "per", "percent", "total") but not their phrasings or number intervals:
//!
//! - **templates**: every category has training phrasings and held-out ones (new
//!   wordings and orders of the same quantities); training texts are also
//!   reworded at random (synonyms, the question first, an opening), never into a
//!   held-out wording;
//! - **numbers**: each multi-digit quantity of a held-out problem lies in an
//!   interval training never draws that quantity from ([`held_out_leading`]:
//!   the first number a problem draws, if it has two digits, is in the 50s or
//!   80s in held-out problems and never in training ones; the second in the 20s
//!   or 90s; ...), while every number still appears in training as some other
//!   quantity, so the model can learn to copy any number; cents and percentages
//!   come from disjoint lists. One-digit counts are shared.

use taper_calculator::Calculator;

use crate::rng::Rng;

/// Which problems: the training split or the held-out one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training templates and number intervals.
    Train,
    /// Templates and number intervals never used in training.
    HeldOut,
}

/// The leading digits reserved for the held-out split among numbers of `digits`
/// digits (two or more) drawn as the `slot`-th number of a problem (counting
/// from 0): two per length and slot, a different pair for the next slot, so that
/// every number of every length is a training number in some slot.
pub fn held_out_leading(digits: u32, slot: u32) -> [u64; 2] {
    const PAIRS: [[u64; 2]; 4] = [[3, 6], [4, 7], [5, 8], [2, 9]];
    PAIRS[((digits + slot) % 4) as usize]
}

// Cents and percentages come from disjoint lists: the 30s and 60s are held out.
const TRAIN_CENTS: [&str; 12] = [
    "25", "50", "75", "20", "80", "10", "90", "15", "85", "45", "40", "95",
];
const HELD_OUT_CENTS: [&str; 5] = ["30", "60", "35", "65", "39"];
const TRAIN_PERCENTS: [u64; 12] = [5, 10, 15, 20, 25, 40, 45, 50, 70, 75, 80, 90];
const HELD_OUT_PERCENTS: [u64; 4] = [30, 35, 60, 65];

const NAMES: [&str; 16] = [
    "Ana", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kim", "Leo",
    "Maya", "Nina", "Omar", "Paul",
];

/// Things to buy: (singular, plural).
const ITEMS: [(&str, &str); 14] = [
    ("pen", "pens"),
    ("book", "books"),
    ("apple", "apples"),
    ("notebook", "notebooks"),
    ("ticket", "tickets"),
    ("shirt", "shirts"),
    ("cup", "cups"),
    ("lamp", "lamps"),
    ("candle", "candles"),
    ("plate", "plates"),
    ("ball", "balls"),
    ("toy", "toys"),
    ("bottle", "bottles"),
    ("cookie", "cookies"),
];

/// One word problem with its solution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The template it comes from.
    pub template: &'static str,
    /// The split it belongs to.
    pub split: Split,
    /// The problem as the user asks it.
    pub text: String,
    /// The quantities restated: the reasoning before the calculator call.
    pub notes: String,
    /// The calculator expression that solves it, numbers as in the text.
    pub expression: String,
    /// What the calculator prints for the expression (`= 42`, `= 21/2 (exactly 10.5)`).
    pub calculator_output: String,
    /// The answer: the calculator's (exact decimal) result, as it prints it.
    pub answer: String,
    /// The unit of the answer ("dollars", "km"), possibly empty.
    pub unit: &'static str,
}

/// Draws numbers for one split.
struct Draw<'a> {
    rng: &'a mut Rng,
    split: Split,
    /// How many integers this problem has drawn.
    slot: u32,
}

impl Draw<'_> {
    /// An integer with `min..=max` digits; one-digit numbers are 2..=9.
    fn int(&mut self, min_digits: u32, max_digits: u32) -> u64 {
        let digits = self.rng.range(u64::from(min_digits), u64::from(max_digits)) as u32;
        let slot = self.slot;
        self.slot += 1;
        if digits == 1 {
            return self.rng.range(2, 9);
        }
        let reserved = held_out_leading(digits, slot);
        let leading = match self.split {
            Split::Train => loop {
                let d = self.rng.range(1, 9);
                if !reserved.contains(&d) {
                    break d;
                }
            },
            Split::HeldOut => *self.rng.pick(&reserved),
        };
        let scale = 10u64.pow(digits - 1);
        leading * scale + self.rng.range(0, scale - 1)
    }

    /// A count of things: 2 to 99.
    fn count(&mut self) -> u64 {
        self.int(1, 2)
    }

    /// A price in dollars: whole, or with cents.
    fn price(&mut self) -> String {
        let whole = self.int(1, 2);
        if self.rng.range(0, 1) == 0 {
            return whole.to_string();
        }
        let cents = match self.split {
            Split::Train => *self.rng.pick(&TRAIN_CENTS),
            Split::HeldOut => *self.rng.pick(&HELD_OUT_CENTS),
        };
        format!("{whole}.{cents}")
    }

    fn percent(&mut self) -> u64 {
        match self.split {
            Split::Train => *self.rng.pick(&TRAIN_PERCENTS),
            Split::HeldOut => *self.rng.pick(&HELD_OUT_PERCENTS),
        }
    }

    fn name(&mut self) -> &'static str {
        let name: &&'static str = self.rng.pick(&NAMES);
        name
    }

    fn item(&mut self) -> (&'static str, &'static str) {
        *self.rng.pick(&ITEMS)
    }

    /// Two different items.
    fn two_items(&mut self) -> ((&'static str, &'static str), (&'static str, &'static str)) {
        let a = self.item();
        loop {
            let b = self.item();
            if b != a {
                return (a, b);
            }
        }
    }

    /// A bill that covers `cost`: the smallest of 10, 20, 50, 100, 200, ... above it.
    fn bill_above(&mut self, cost: f64) -> u64 {
        let mut scale = 10;
        loop {
            for step in [1, 2, 5] {
                if (step * scale) as f64 > cost {
                    return step * scale;
                }
            }
            scale *= 10;
        }
    }
}

/// A problem as a template builds it, before the calculator runs.
struct Built {
    text: String,
    notes: String,
    expression: String,
    unit: &'static str,
}

/// A template: its name, its split and how it builds a problem.
struct Template {
    name: &'static str,
    split: Split,
    build: fn(&mut Draw<'_>) -> Built,
}

fn built(text: String, notes: String, expression: String, unit: &'static str) -> Built {
    Built {
        text,
        notes,
        expression,
        unit,
    }
}

/// `n` things at `p` dollars each: the total.
fn each_total(text: String, n: u64, items: &str, p: &str) -> Built {
    built(
        text,
        format!("{n} {items} at {p} dollars each."),
        format!("{n} * {p}"),
        "dollars",
    )
}

/// `n` things at `p` dollars each paid with `bill` dollars: the change.
fn change(text: String, bill: u64, n: u64, items: &str, p: &str) -> Built {
    built(
        text,
        format!("Paid {bill} dollars. {n} {items} at {p} dollars each."),
        format!("{bill} - {n} * {p}"),
        "dollars",
    )
}

/// `s` km per hour for `t` hours: the distance.
fn speed(text: String, s: u64, t: u64) -> Built {
    built(
        text,
        format!("{s} km per hour for {t} hours."),
        format!("{s} * {t}"),
        "km",
    )
}

/// `total` liters in `t` minutes: the rate.
fn flow(text: String, total: u64, t: u64) -> Built {
    built(
        text,
        format!("{total} liters in {t} minutes."),
        format!("{total} / {t}"),
        "liters per minute",
    )
}

/// `p` percent of `x`.
fn percent_of(text: String, p: u64, x: u64) -> Built {
    built(
        text,
        format!("{p} percent of {x}."),
        format!("{x} * {p} / 100"),
        "",
    )
}

/// `x` km in meters.
fn km_to_m(text: String, x: u64) -> Built {
    built(
        text,
        format!("{x} km, 1000 meters per km."),
        format!("{x} * 1000"),
        "meters",
    )
}

/// `x` hours in minutes.
fn hours_to_min(text: String, x: u64) -> Built {
    built(
        text,
        format!("{x} hours, 60 minutes per hour."),
        format!("{x} * 60"),
        "minutes",
    )
}

/// `b` boxes of `a` things, `c` given away: what is left.
fn boxes(text: String, a: u64, b: u64, items: &'static str, c: u64) -> Built {
    built(
        text,
        format!("{b} boxes of {a} {items}. Gives away {c}."),
        format!("{a} * {b} - {c}"),
        items,
    )
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or(0.0)
}

const TEMPLATES: &[Template] = &[
    // Shopping.
    Template {
        name: "shop-each",
        split: Split::Train,
        build: |d| {
            let (name, (_, items), n, p) = (d.name(), d.item(), d.count(), d.price());
            each_total(
                format!("{name} buys {n} {items} at {p} dollars each. How much does {name} spend?"),
                n,
                items,
                &p,
            )
        },
    },
    Template {
        name: "shop-cost-total",
        split: Split::Train,
        build: |d| {
            let ((item, items), n, p) = (d.item(), d.count(), d.price());
            each_total(
                format!("One {item} costs {p} dollars. What do {n} {items} cost in total?"),
                n,
                items,
                &p,
            )
        },
    },
    Template {
        name: "shop-change",
        split: Split::Train,
        build: |d| {
            let (name, (_, items), n, p) = (d.name(), d.item(), d.count(), d.price());
            let bill = d.bill_above(n as f64 * num(&p));
            change(
                format!(
                    "{name} buys {n} {items} at {p} dollars each and pays with {bill} dollars. How much change does {name} get?"
                ),
                bill,
                n,
                items,
                &p,
            )
        },
    },
    Template {
        name: "shop-price-if-each",
        split: Split::HeldOut,
        build: |d| {
            let ((_, items), n, p) = (d.item(), d.count(), d.price());
            each_total(
                format!("What is the total price of {n} {items} if each one costs {p} dollars?"),
                n,
                items,
                &p,
            )
        },
    },
    Template {
        name: "shop-change-left",
        split: Split::HeldOut,
        build: |d| {
            let (name, (_, items), n, p) = (d.name(), d.item(), d.count(), d.price());
            let bill = d.bill_above(n as f64 * num(&p));
            change(
                format!(
                    "{name} pays {bill} dollars for {n} {items} that cost {p} dollars each. How much change is left?"
                ),
                bill,
                n,
                items,
                &p,
            )
        },
    },
    // Rates.
    Template {
        name: "rate-speed",
        split: Split::Train,
        build: |d| {
            let (s, t) = (d.int(2, 3), d.int(1, 2));
            speed(
                format!("A car travels at {s} km per hour for {t} hours. How far does it go?"),
                s,
                t,
            )
        },
    },
    Template {
        name: "rate-pages",
        split: Split::Train,
        build: |d| {
            let (name, r, days) = (d.name(), d.int(1, 2), d.int(1, 3));
            built(
                format!(
                    "{name} reads {r} pages per day. How many pages does {name} read in {days} days?"
                ),
                format!("{r} pages per day for {days} days."),
                format!("{r} * {days}"),
                "pages",
            )
        },
    },
    Template {
        name: "rate-flow",
        split: Split::Train,
        build: |d| {
            let (total, t) = (d.int(2, 4), d.int(1, 2));
            flow(
                format!(
                    "A pump moves {total} liters in {t} minutes. How many liters does it move per minute?"
                ),
                total,
                t,
            )
        },
    },
    Template {
        name: "rate-train-distance",
        split: Split::HeldOut,
        build: |d| {
            let (s, t) = (d.int(2, 3), d.int(1, 2));
            speed(
                format!("In {t} hours at {s} km per hour, how far does a train travel?"),
                s,
                t,
            )
        },
    },
    Template {
        name: "rate-flow-per",
        split: Split::HeldOut,
        build: |d| {
            let (total, t) = (d.int(2, 4), d.int(1, 2));
            flow(
                format!(
                    "{total} liters flow out of a tank in {t} minutes. What is the flow in liters per minute?"
                ),
                total,
                t,
            )
        },
    },
    // Percentages.
    Template {
        name: "pct-of",
        split: Split::Train,
        build: |d| {
            let (p, x) = (d.percent(), d.int(2, 4));
            percent_of(format!("What is {p} percent of {x}?"), p, x)
        },
    },
    Template {
        name: "pct-sale",
        split: Split::Train,
        build: |d| {
            let ((item, _), x, p) = (d.item(), d.int(2, 3), d.percent());
            built(
                format!(
                    "A {item} costs {x} dollars and is on sale for {p} percent off. What is the sale price?"
                ),
                format!("{x} dollars, {p} percent off."),
                format!("{x} - {x} * {p} / 100"),
                "dollars",
            )
        },
    },
    Template {
        name: "pct-grow",
        split: Split::Train,
        build: |d| {
            let (x, p) = (d.int(3, 5), d.percent());
            built(
                format!("A town of {x} people grows by {p} percent. What is the new population?"),
                format!("{x} people, up {p} percent."),
                format!("{x} + {x} * {p} / 100"),
                "people",
            )
        },
    },
    Template {
        name: "pct-find",
        split: Split::HeldOut,
        build: |d| {
            let (p, x) = (d.percent(), d.int(2, 4));
            percent_of(format!("Find {p} percent of {x}."), p, x)
        },
    },
    Template {
        name: "pct-rise",
        split: Split::HeldOut,
        build: |d| {
            let ((item, _), x, p) = (d.item(), d.int(2, 3), d.percent());
            built(
                format!(
                    "The price of a {item} is {x} dollars. It goes up by {p} percent. What is the new price?"
                ),
                format!("{x} dollars, up {p} percent."),
                format!("{x} + {x} * {p} / 100"),
                "dollars",
            )
        },
    },
    // Unit conversions.
    Template {
        name: "unit-km-m",
        split: Split::Train,
        build: |d| {
            let x = d.int(1, 3);
            km_to_m(format!("How many meters are in {x} km?"), x)
        },
    },
    Template {
        name: "unit-h-min",
        split: Split::Train,
        build: |d| {
            let x = d.int(1, 3);
            hours_to_min(format!("How many minutes are in {x} hours?"), x)
        },
    },
    Template {
        name: "unit-kg-g",
        split: Split::Train,
        build: |d| {
            let (name, x) = (d.name(), d.int(1, 3));
            built(
                format!("{name} has {x} kg of flour. How many grams is that?"),
                format!("{x} kg, 1000 grams per kg."),
                format!("{x} * 1000"),
                "grams",
            )
        },
    },
    Template {
        name: "unit-dozen",
        split: Split::Train,
        build: |d| {
            let x = d.int(1, 3);
            built(
                format!("How many eggs are in {x} dozen?"),
                format!("{x} dozen, 12 eggs per dozen."),
                format!("{x} * 12"),
                "eggs",
            )
        },
    },
    Template {
        name: "unit-min-h",
        split: Split::Train,
        build: |d| {
            let x = d.int(2, 3);
            built(
                format!("How many hours are {x} minutes?"),
                format!("{x} minutes, 60 minutes per hour."),
                format!("{x} / 60"),
                "hours",
            )
        },
    },
    Template {
        name: "unit-convert-h",
        split: Split::HeldOut,
        build: |d| {
            let x = d.int(1, 3);
            hours_to_min(format!("Convert {x} hours to minutes."), x)
        },
    },
    Template {
        name: "unit-rope-m",
        split: Split::HeldOut,
        build: |d| {
            let x = d.int(1, 3);
            km_to_m(
                format!("A rope is {x} km long. How long is it in meters?"),
                x,
            )
        },
    },
    // Multi-step.
    Template {
        name: "multi-two-items",
        split: Split::Train,
        build: |d| {
            let (name, ((_, xs), (_, ys))) = (d.name(), d.two_items());
            let (a, p, b, q) = (d.count(), d.price(), d.count(), d.price());
            built(
                format!(
                    "{name} buys {a} {xs} at {p} dollars each and {b} {ys} at {q} dollars each. What is the total cost?"
                ),
                format!("{a} {xs} at {p} dollars each. {b} {ys} at {q} dollars each."),
                format!("{a} * {p} + {b} * {q}"),
                "dollars",
            )
        },
    },
    Template {
        name: "multi-spend-earn",
        split: Split::Train,
        build: |d| {
            let (name, (_, items), n, p) = (d.name(), d.item(), d.count(), d.price());
            let (x, y) = (d.int(3, 4), d.int(2, 3));
            built(
                format!(
                    "{name} has {x} dollars, buys {n} {items} at {p} dollars each, and then earns {y} dollars. How much money does {name} have now?"
                ),
                format!("Has {x} dollars. {n} {items} at {p} dollars each. Earns {y} dollars."),
                format!("{x} - {n} * {p} + {y}"),
                "dollars",
            )
        },
    },
    Template {
        name: "multi-boxes-give",
        split: Split::Train,
        build: |d| {
            let (name, (_, items), a, b) = (d.name(), d.item(), d.count(), d.count());
            let c = d.int(1, 2);
            boxes(
                format!(
                    "A box holds {a} {items}. {name} has {b} boxes and gives away {c} {items}. How many {items} are left?"
                ),
                a,
                b,
                items,
                c,
            )
        },
    },
    Template {
        name: "multi-discount-total",
        split: Split::Train,
        build: |d| {
            let (name, ((_, xs), (_, ys))) = (d.name(), d.two_items());
            let (a, p, b, q, r) = (d.count(), d.price(), d.count(), d.price(), d.percent());
            built(
                format!(
                    "{name} buys {a} {xs} at {p} dollars each and {b} {ys} at {q} dollars each, then gets {r} percent off the total. How much does {name} pay?"
                ),
                format!(
                    "{a} {xs} at {p} dollars each. {b} {ys} at {q} dollars each. {r} percent off."
                ),
                format!("({a} * {p} + {b} * {q}) * (100 - {r}) / 100"),
                "dollars",
            )
        },
    },
    Template {
        name: "multi-share",
        split: Split::Train,
        build: |d| {
            let ((_, items), a, p, t) = (d.item(), d.count(), d.price(), d.int(1, 2));
            let n = *d.rng.pick(&[2u64, 4, 5, 8, 10]);
            built(
                format!(
                    "{n} friends buy {a} {items} at {p} dollars each and pay a {t} dollar fee. They split the total equally. How much does each pay?"
                ),
                format!("{a} {items} at {p} dollars each, plus {t} dollars, split {n} ways."),
                format!("({a} * {p} + {t}) / {n}"),
                "dollars",
            )
        },
    },
    Template {
        name: "multi-total-plus",
        split: Split::HeldOut,
        build: |d| {
            let ((_, xs), (_, ys)) = d.two_items();
            let (a, p, b, q) = (d.count(), d.price(), d.count(), d.price());
            built(
                format!(
                    "What is the total cost of {b} {ys} at {q} dollars each plus {a} {xs} at {p} dollars each?"
                ),
                format!("{b} {ys} at {q} dollars each. {a} {xs} at {p} dollars each."),
                format!("{b} * {q} + {a} * {p}"),
                "dollars",
            )
        },
    },
    Template {
        name: "multi-earn-spend",
        split: Split::HeldOut,
        build: |d| {
            let (name, (_, items), n, p) = (d.name(), d.item(), d.count(), d.price());
            let (x, y) = (d.int(3, 4), d.int(2, 3));
            built(
                format!(
                    "{name} starts with {x} dollars, earns {y} dollars, then buys {n} {items} at {p} dollars each. How much money is left?"
                ),
                format!("Has {x} dollars. Earns {y} dollars. {n} {items} at {p} dollars each."),
                format!("{x} + {y} - {n} * {p}"),
                "dollars",
            )
        },
    },
    Template {
        name: "multi-boxes-remain",
        split: Split::HeldOut,
        build: |d| {
            let (name, (_, items), a, b) = (d.name(), d.item(), d.count(), d.count());
            let c = d.int(1, 2);
            boxes(
                format!(
                    "{name} has {b} boxes with {a} {items} in each box and gives away {c} {items}. How many {items} remain?"
                ),
                a,
                b,
                items,
                c,
            )
        },
    },
    // More training phrasings of the same computations, in other orders, so that
    // the model learns to find each quantity by its cue words rather than by
    // where it stands. The held-out phrasings above are still never seen.
    Template {
        name: "shop-each-cost",
        split: Split::Train,
        build: |d| {
            let ((item, items), n, p) = (d.item(), d.count(), d.price());
            each_total(
                format!("Each {item} costs {p} dollars. How much do {n} {items} cost?"),
                n,
                items,
                &p,
            )
        },
    },
    Template {
        name: "shop-wants",
        split: Split::Train,
        build: |d| {
            let (name, (_, items), n, p) = (d.name(), d.item(), d.count(), d.price());
            each_total(
                format!(
                    "{name} wants {n} {items}. They cost {p} dollars each. What is the total cost?"
                ),
                n,
                items,
                &p,
            )
        },
    },
    Template {
        name: "shop-bill-first",
        split: Split::Train,
        build: |d| {
            let (name, (_, items), n, p) = (d.name(), d.item(), d.count(), d.price());
            let bill = d.bill_above(n as f64 * num(&p));
            change(
                format!(
                    "{name} has a {bill} dollar bill and buys {n} {items} that cost {p} dollars each. How much change does {name} get?"
                ),
                bill,
                n,
                items,
                &p,
            )
        },
    },
    Template {
        name: "shop-change-back",
        split: Split::Train,
        build: |d| {
            let (name, (_, items), n, p) = (d.name(), d.item(), d.count(), d.price());
            let bill = d.bill_above(n as f64 * num(&p));
            change(
                format!(
                    "{n} {items} cost {p} dollars each. {name} pays {bill} dollars. What change comes back?"
                ),
                bill,
                n,
                items,
                &p,
            )
        },
    },
    Template {
        name: "rate-hours-first",
        split: Split::Train,
        build: |d| {
            let (s, t) = (d.int(2, 3), d.int(1, 2));
            speed(
                format!("For {t} hours a bus drives at {s} km per hour. How far does it drive?"),
                s,
                t,
            )
        },
    },
    Template {
        name: "rate-pages-days-first",
        split: Split::Train,
        build: |d| {
            let (name, r, days) = (d.name(), d.int(1, 2), d.int(1, 3));
            built(
                format!(
                    "In {days} days, reading {r} pages per day, how many pages does {name} read?"
                ),
                format!("{r} pages per day for {days} days."),
                format!("{r} * {days}"),
                "pages",
            )
        },
    },
    Template {
        name: "rate-flow-minutes-first",
        split: Split::Train,
        build: |d| {
            let (total, t) = (d.int(2, 4), d.int(1, 2));
            flow(
                format!(
                    "In {t} minutes a tap fills {total} liters. How many liters per minute is that?"
                ),
                total,
                t,
            )
        },
    },
    Template {
        name: "pct-how-much",
        split: Split::Train,
        build: |d| {
            let (p, x) = (d.percent(), d.int(2, 4));
            percent_of(format!("How much is {p} percent of {x}?"), p, x)
        },
    },
    Template {
        name: "pct-whole-first",
        split: Split::Train,
        build: |d| {
            let (p, x) = (d.percent(), d.int(2, 4));
            percent_of(format!("Take {x} and compute {p} percent of it."), p, x)
        },
    },
    Template {
        name: "pct-price-rises",
        split: Split::Train,
        build: |d| {
            let ((item, _), x, p) = (d.item(), d.int(2, 3), d.percent());
            built(
                format!(
                    "A {item} costs {x} dollars. Its price rises by {p} percent. What does it cost now?"
                ),
                format!("{x} dollars, up {p} percent."),
                format!("{x} + {x} * {p} / 100"),
                "dollars",
            )
        },
    },
    Template {
        name: "pct-discount-first",
        split: Split::Train,
        build: |d| {
            let ((item, _), x, p) = (d.item(), d.int(2, 3), d.percent());
            built(
                format!("With {p} percent off, what does a {item} priced at {x} dollars cost?"),
                format!("{x} dollars, {p} percent off."),
                format!("{x} - {x} * {p} / 100"),
                "dollars",
            )
        },
    },
    Template {
        name: "unit-convert-km",
        split: Split::Train,
        build: |d| {
            let x = d.int(1, 3);
            km_to_m(format!("Convert {x} km to meters."), x)
        },
    },
    Template {
        name: "unit-hours-is",
        split: Split::Train,
        build: |d| {
            let (name, x) = (d.name(), d.int(1, 3));
            hours_to_min(
                format!("{name} works {x} hours. How many minutes is that?"),
                x,
            )
        },
    },
    Template {
        name: "unit-road-m",
        split: Split::Train,
        build: |d| {
            let x = d.int(1, 3);
            km_to_m(
                format!("A road is {x} km long. What is its length in meters?"),
                x,
            )
        },
    },
    Template {
        name: "multi-two-items-together",
        split: Split::Train,
        build: |d| {
            let ((_, xs), (_, ys)) = d.two_items();
            let (a, p, b, q) = (d.count(), d.price(), d.count(), d.price());
            built(
                format!(
                    "How much do {a} {xs} at {p} dollars each and {b} {ys} at {q} dollars each cost together?"
                ),
                format!("{a} {xs} at {p} dollars each. {b} {ys} at {q} dollars each."),
                format!("{a} * {p} + {b} * {q}"),
                "dollars",
            )
        },
    },
    Template {
        name: "multi-earn-then-buy",
        split: Split::Train,
        build: |d| {
            let (name, (_, items), n, p) = (d.name(), d.item(), d.count(), d.price());
            let (x, y) = (d.int(3, 4), d.int(2, 3));
            built(
                format!(
                    "{name} has {x} dollars. {name} earns {y} dollars and then buys {n} {items} at {p} dollars each. How much money does {name} have left?"
                ),
                format!("Has {x} dollars. Earns {y} dollars. {n} {items} at {p} dollars each."),
                format!("{x} + {y} - {n} * {p}"),
                "dollars",
            )
        },
    },
    Template {
        name: "multi-boxes-there-are",
        split: Split::Train,
        build: |d| {
            let (name, (_, items), a, b) = (d.name(), d.item(), d.count(), d.count());
            let c = d.int(1, 2);
            boxes(
                format!(
                    "There are {b} boxes with {a} {items} each. {name} gives away {c} {items}. How many {items} are left?"
                ),
                a,
                b,
                items,
                c,
            )
        },
    },
];

/// The names of the templates of a split.
pub fn template_names(split: Split) -> Vec<&'static str> {
    TEMPLATES
        .iter()
        .filter(|t| t.split == split)
        .map(|t| t.name)
        .collect()
}

/// The decimal a calculator output states exactly: `42` for `= 42`, `10.5` for
/// `= 21/2 (exactly 10.5)`; `None` for a repeating decimal or an approximation.
pub fn exact_result(output: &str) -> Option<&str> {
    let rest = output.strip_prefix("= ")?;
    if let Some(start) = rest.find("(exactly ") {
        return rest[start + "(exactly ".len()..].strip_suffix(')');
    }
    let integer = rest.strip_prefix('-').unwrap_or(rest);
    (!integer.is_empty() && integer.bytes().all(|b| b.is_ascii_digit())).then_some(rest)
}

/// Training rewordings of a word: (the word with its spaces, the alternatives).
/// None of them is a held-out template's wording.
const REWORDINGS: &[(&str, &[&str])] = &[
    (" buys ", &[" gets ", " purchases ", " picks up "]),
    (" costs ", &[" sells for ", " is priced at "]),
    (" travels at ", &[" drives at ", " moves at "]),
    (" reads ", &[" finishes ", " gets through "]),
    (" moves ", &[" pumps ", " pushes "]),
    (" gives away ", &[" hands out ", " donates "]),
    (" earns ", &[" makes ", " is paid "]),
    (" pays with ", &[" hands over ", " pays using "]),
];

/// Openings put before some training problems.
const OPENINGS: &[&str] = &[
    "Question: ",
    "Here is a problem. ",
    "Solve this: ",
    "Quick one: ",
];

/// A training problem's text reworded at random, so that the model learns to read
/// the cue words (each, per, percent, change) wherever they stand instead of the
/// few sentence shapes of the templates: words replaced by synonyms, the question
/// moved before the facts, "What is" made an imperative, an opening added. The
/// quantities and their words are unchanged, so the reasoning and the expression
/// stay right.
fn reword(text: &str, rng: &mut Rng) -> String {
    let mut text = text.to_owned();
    for &(word, alternatives) in REWORDINGS {
        if text.contains(word) && rng.range(0, 1) == 0 {
            let alternative = *rng.pick(alternatives);
            text = text.replacen(word, alternative, 1);
        }
    }
    if let Some(rest) = text.strip_prefix("What is ")
        && let Some(rest) = rest.strip_suffix('?')
        && rng.range(0, 2) == 0
    {
        text = format!("{} {rest}.", rng.pick(&["Compute", "Work out"]));
    }
    // "Facts. Question?" -> "Question? Facts."
    if text.ends_with('?')
        && let Some(cut) = text.rfind(". ")
        && rng.range(0, 2) == 0
    {
        text = format!("{} {}", &text[cut + 2..], &text[..=cut]);
    }
    if rng.range(0, 3) == 0 {
        text = format!("{}{text}", rng.pick(OPENINGS));
    }
    text
}

/// `n` problems of `split`, the same for the same seed. Templates of the split are
/// used in turn; a problem whose result is not an exact, non-negative decimal is
/// drawn again.
pub fn generate(seed: u64, split: Split, n: usize) -> Vec<Problem> {
    let templates: Vec<&Template> = TEMPLATES.iter().filter(|t| t.split == split).collect();
    let calculator = Calculator::new();
    let mut rng = Rng::new(seed ^ split_salt(split));
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let template = templates[rng.next_u64() as usize % templates.len()];
        let b = (template.build)(&mut Draw {
            rng: &mut rng,
            split,
            slot: 0,
        });
        let Ok(evaluation) = calculator.evaluate(&b.expression) else {
            continue;
        };
        let output = evaluation.to_string();
        let Some(answer) = exact_result(&output).filter(|a| !a.starts_with('-')) else {
            continue;
        };
        let answer = answer.to_owned();
        let text = match split {
            Split::Train => reword(&b.text, &mut rng),
            Split::HeldOut => b.text,
        };
        out.push(Problem {
            template: template.name,
            split,
            text,
            notes: b.notes,
            expression: b.expression,
            calculator_output: output,
            answer,
            unit: b.unit,
        });
    }
    out
}

fn split_salt(split: Split) -> u64 {
    match split {
        Split::Train => 0x7261_696e,
        Split::HeldOut => 0x6865_6c64,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn training_texts_are_reworded_but_never_into_held_out_wordings() {
        let train = generate(3, Split::Train, 2000);
        let question_first = train
            .iter()
            .filter(|p| p.text.contains("? ") && !p.text.ends_with('?'))
            .count();
        let synonyms = train
            .iter()
            .filter(|p| p.text.contains(" purchases "))
            .count();
        let openings = train
            .iter()
            .filter(|p| p.text.starts_with("Question: "))
            .count();
        assert!(question_first > 200 && synonyms > 20 && openings > 50);
        // Wordings only held-out templates use.
        for fragment in [
            "if each one costs",
            "change is left",
            "flow out of",
            "goes up by",
            "starts with",
            "in each box",
            "Find ",
            "rope",
            "train",
        ] {
            assert!(
                !train.iter().any(|p| p.text.contains(fragment)),
                "{fragment}"
            );
        }
    }

    #[test]
    fn same_seed_same_problems() {
        assert_eq!(generate(3, Split::Train, 50), generate(3, Split::Train, 50));
        assert_ne!(generate(3, Split::Train, 50), generate(4, Split::Train, 50));
    }

    #[test]
    fn splits_share_no_template() {
        let train: HashSet<_> = template_names(Split::Train).into_iter().collect();
        let held: HashSet<_> = template_names(Split::HeldOut).into_iter().collect();
        assert!(train.len() >= 15 && held.len() >= 8);
        assert!(train.is_disjoint(&held));
        assert!(
            generate(1, Split::HeldOut, 200)
                .iter()
                .all(|p| held.contains(p.template))
        );
    }

    #[test]
    fn splits_draw_each_quantity_from_disjoint_intervals() {
        // (slot, digits, leading digit) of numbers drawn as templates draw them.
        let draws = |split: Split| -> Vec<(u32, u32, u64)> {
            let mut rng = Rng::new(5);
            let mut out = Vec::new();
            for _ in 0..400 {
                let mut d = Draw {
                    rng: &mut rng,
                    split,
                    slot: 0,
                };
                for slot in 0..4 {
                    let n = d.int(2, 4);
                    let text = n.to_string();
                    out.push((
                        slot,
                        text.len() as u32,
                        u64::from(text.as_bytes()[0] - b'0'),
                    ));
                }
            }
            out
        };
        for (slot, len, d) in draws(Split::HeldOut) {
            assert!(held_out_leading(len, slot).contains(&d), "{slot} {len} {d}");
        }
        let mut seen = HashSet::new();
        for (slot, len, d) in draws(Split::Train) {
            assert!(
                !held_out_leading(len, slot).contains(&d),
                "{slot} {len} {d}"
            );
            seen.insert((len, d));
        }
        // Every number (every leading digit of every length) is drawn in training.
        for len in 2..=4 {
            assert!((1..=9).all(|d| seen.contains(&(len, d))), "{seen:?}");
        }
    }

    #[test]
    fn answers_are_the_calculators() {
        for p in generate(2, Split::Train, 300)
            .into_iter()
            .chain(generate(2, Split::HeldOut, 300))
        {
            assert!(p.calculator_output.starts_with("= "), "{p:?}");
            assert_eq!(exact_result(&p.calculator_output), Some(p.answer.as_str()));
            let numbers: Vec<&str> = p
                .expression
                .split(|c: char| !c.is_ascii_digit() && c != '.')
                .filter(|w| !w.is_empty())
                .collect();
            for n in numbers {
                let constant = matches!(n, "100" | "1000" | "60" | "12");
                assert!(constant || p.text.contains(n), "{n} not in {}", p.text);
            }
        }
    }

    #[test]
    fn exact_results() {
        assert_eq!(exact_result("= 42"), Some("42"));
        assert_eq!(exact_result("= 21/2 (exactly 10.5)"), Some("10.5"));
        assert_eq!(
            exact_result("= 10/3 (≈ 3.33333, the repeating decimal 3.(3))"),
            None
        );
        assert_eq!(exact_result("≈ 1.41421"), None);
    }
}
