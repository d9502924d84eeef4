//! Synthetic arithmetic word problems: shopping, rates, percentages, unit
//! conversions and multi-step problems of two to four operations.
//!
//! Each problem has its text, the quantities restated (the model's reasoning
//! before the call), the calculator expression that solves it, and the answer as
//! the calculator prints it. A problem is composed: each kind of computation
//! ("n things at p dollars each", "change from a bill", ...) has several
//! sentences that state its facts and several questions that ask for its
//! result, and a template is one pair of them. The held-out split differs from
//! training in:
//!
//! - **templates**: a third of each kind's (sentence, question) pairs are held
//!   out, placed so that every sentence and every question is in training with
//!   other partners: a held-out problem is a combination training never shows,
//!   of parts it does (a model this small cannot learn a word it never reads);
//! - **numbers**: each multi-digit quantity of a held-out problem lies in an
//!   interval training never draws that quantity from ([`held_out_leading`]:
//!   the first number a problem draws, if it has two digits, is in the 50s or
//!   80s in held-out problems and never in training ones; the second in the 20s
//!   or 90s; ...), while every number still appears in training as some other
//!   quantity, so the model can learn to copy any number; cents are in the 30s
//!   or 60s in held-out prices only, and percentages come from disjoint lists.
//!   One-digit counts are shared.

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

// Cents have their tens digit in the 30s or 60s in held-out prices and never in
// training ones (every units digit in both); percentages come from disjoint lists.
const HELD_OUT_CENTS_TENS: [u64; 2] = [3, 6];
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
    /// The template it comes from: its kind and the sentence and question it
    /// pairs (`shop-total f1 q2`), or the whole problem it is (`shop-total w0`).
    pub template: String,
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
        let leading = self.split_digit(1, &held_out_leading(digits, slot));
        let scale = 10u64.pow(digits - 1);
        leading * scale + self.rng.range(0, scale - 1)
    }

    /// A digit from `lo` to 9: one of `reserved` in held-out problems, any other
    /// in training ones.
    fn split_digit(&mut self, lo: u64, reserved: &[u64]) -> u64 {
        match self.split {
            Split::Train => loop {
                let d = self.rng.range(lo, 9);
                if !reserved.contains(&d) {
                    break d;
                }
            },
            Split::HeldOut => *self.rng.pick(reserved),
        }
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
        let tens = self.split_digit(0, &HELD_OUT_CENTS_TENS);
        format!("{whole}.{tens}{}", self.rng.range(0, 9))
    }

    fn percent(&mut self) -> u64 {
        match self.split {
            Split::Train => *self.rng.pick(&TRAIN_PERCENTS),
            Split::HeldOut => *self.rng.pick(&HELD_OUT_PERCENTS),
        }
    }

    fn name(&mut self) -> &'static str {
        self.word(&NAMES)
    }

    /// One of `words`.
    fn word(&mut self, words: &[&'static str]) -> &'static str {
        let word: &&'static str = self.rng.pick(words);
        word
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
}

/// How a problem is solved: the quantities restated, the expression, the unit.
struct Solution {
    notes: String,
    expression: String,
    unit: &'static str,
}

fn solution(notes: String, expression: String, unit: &'static str) -> Solution {
    Solution {
        notes,
        expression,
        unit,
    }
}

/// One computation with its quantities drawn: every sentence that can state its
/// facts, every question that can ask for its result, and its solution.
struct Composed {
    /// Sentences that each state all the quantities.
    facts: Vec<String>,
    /// Questions that ask for the result.
    questions: Vec<String>,
    /// Whole problems in one piece (the quantities inside the question), used in
    /// training only.
    whole: Vec<String>,
    solution: Solution,
}

/// A kind of computation: its name and how it draws a problem.
struct Kind {
    name: &'static str,
    build: fn(&mut Draw<'_>) -> Composed,
}

/// Whether the problems of the `kind`-th kind that state their facts with the
/// `fact`-th sentence and ask the `question`-th question are held out: a third of
/// the pairs, placed so that every sentence and every question is in training
/// with other partners (each kind has at least three of each).
fn held_out_pair(kind: usize, fact: usize, question: usize) -> bool {
    (kind + fact + question).is_multiple_of(3)
}

/// `n` things at `p` dollars each: the total.
fn each_total(n: u64, items: &str, p: &str) -> Solution {
    solution(
        format!("{n} {items} at {p} dollars each."),
        format!("{n} * {p}"),
        "dollars",
    )
}

/// `x` `units` converted to `to`, `factor` of them per `unit`: the notes "3 km,
/// 1000 meters per km." and the expression `3 * 1000`.
fn times_per_unit(x: u64, units: &str, factor: u64, to: &'static str, unit: &str) -> Solution {
    solution(
        format!("{x} {units}, {factor} {to} per {unit}."),
        format!("{x} * {factor}"),
        to,
    )
}

/// The questions that ask how much money `name` has after earning and spending.
fn money_left_questions(name: &str) -> Vec<String> {
    vec![
        format!("How much money does {name} have now?"),
        "How much money is left?".into(),
        format!("How much does {name} have in the end?"),
    ]
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or(0.0)
}

/// A bill that covers `cost`: the smallest of 10, 20, 50, 100, 200, ... above it.
fn bill_above(cost: f64) -> u64 {
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

/// `text` with its first letter upper-case.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

const BUYS: [&str; 4] = ["buys", "gets", "purchases", "picks up"];
const VEHICLES: [&str; 5] = ["car", "bus", "train", "bike", "truck"];

const KINDS: &[Kind] = &[
    Kind {
        name: "shop-total",
        build: |d| {
            let (name, (item, items), buys) = (d.name(), d.item(), d.word(&BUYS));
            let (n, p) = (d.count(), d.price());
            Composed {
                facts: vec![
                    format!("{name} {buys} {n} {items} at {p} dollars each."),
                    format!("One {item} costs {p} dollars and {name} {buys} {n} {items}."),
                    format!(
                        "{} cost {p} dollars each. {name} wants {n} of them.",
                        capitalized(items)
                    ),
                    format!("{name} needs {n} {items}, and each one costs {p} dollars."),
                    format!("Each {item} is priced at {p} dollars. {name} {buys} {n} {items}."),
                ],
                questions: vec![
                    format!("How much does {name} spend?"),
                    "What is the total cost?".into(),
                    format!("What do the {items} cost in total?"),
                    "How much money is that altogether?".into(),
                    "Find the total price.".into(),
                ],
                whole: vec![
                    format!("One {item} costs {p} dollars. What do {n} {items} cost in total?"),
                    format!(
                        "What is the total price of {n} {items} if each one costs {p} dollars?"
                    ),
                    format!("How much do {n} {items} at {p} dollars each cost?"),
                ],
                solution: each_total(n, items, &p),
            }
        },
    },
    Kind {
        name: "shop-change",
        build: |d| {
            let (name, (_, items), buys) = (d.name(), d.item(), d.word(&BUYS));
            let (n, p) = (d.count(), d.price());
            let bill = bill_above(n as f64 * num(&p));
            Composed {
                facts: vec![
                    format!(
                        "{name} {buys} {n} {items} at {p} dollars each and pays with {bill} dollars."
                    ),
                    format!(
                        "{name} pays {bill} dollars for {n} {items} that cost {p} dollars each."
                    ),
                    format!(
                        "{name} has a {bill} dollar bill and {buys} {n} {items} at {p} dollars each."
                    ),
                    format!("{n} {items} cost {p} dollars each. {name} pays with {bill} dollars."),
                    format!(
                        "{name} hands over {bill} dollars for {n} {items} priced at {p} dollars each."
                    ),
                ],
                questions: vec![
                    format!("How much change does {name} get?"),
                    "How much change is left?".into(),
                    "What change comes back?".into(),
                    format!("How much money does {name} get back?"),
                ],
                whole: vec![format!(
                    "How much change is left from {bill} dollars after buying {n} {items} at {p} dollars each?"
                )],
                solution: solution(
                    format!("Paid {bill} dollars. {n} {items} at {p} dollars each."),
                    format!("{bill} - {n} * {p}"),
                    "dollars",
                ),
            }
        },
    },
    Kind {
        name: "rate-speed",
        build: |d| {
            let vehicle = d.word(&VEHICLES);
            let (s, t) = (d.int(2, 3), d.int(1, 2));
            Composed {
                facts: vec![
                    format!("A {vehicle} travels at {s} km per hour for {t} hours."),
                    format!("For {t} hours a {vehicle} drives at {s} km per hour."),
                    format!("A {vehicle} goes {s} km per hour. It keeps going for {t} hours."),
                    format!("A {vehicle} moves at {s} km per hour, and the trip takes {t} hours."),
                ],
                questions: vec![
                    "How far does it go?".into(),
                    "How many km does it travel?".into(),
                    "What distance does it cover?".into(),
                    "How long is the trip in km?".into(),
                ],
                whole: vec![format!(
                    "In {t} hours at {s} km per hour, how far does a {vehicle} travel?"
                )],
                solution: solution(
                    format!("{s} km per hour for {t} hours."),
                    format!("{s} * {t}"),
                    "km",
                ),
            }
        },
    },
    Kind {
        name: "rate-pages",
        build: |d| {
            let name = d.name();
            let (r, days) = (d.int(1, 2), d.int(1, 3));
            Composed {
                facts: vec![
                    format!("{name} reads {r} pages per day for {days} days."),
                    format!("For {days} days, {name} reads {r} pages each day."),
                    format!("{name} reads {r} pages a day and keeps this up for {days} days."),
                    format!("Every day {name} reads {r} pages, for {days} days."),
                ],
                questions: vec![
                    format!("How many pages does {name} read?"),
                    "How many pages is that in total?".into(),
                    "What is the total number of pages?".into(),
                ],
                whole: vec![format!(
                    "{name} reads {r} pages per day. How many pages does {name} read in {days} days?"
                )],
                solution: solution(
                    format!("{r} pages per day for {days} days."),
                    format!("{r} * {days}"),
                    "pages",
                ),
            }
        },
    },
    Kind {
        name: "rate-flow",
        build: |d| {
            let (total, t) = (d.int(2, 4), d.int(1, 2));
            Composed {
                facts: vec![
                    format!("A pump moves {total} liters in {t} minutes."),
                    format!("In {t} minutes a tap fills {total} liters."),
                    format!("{total} liters flow out of a tank in {t} minutes."),
                    format!("It takes {t} minutes for a hose to pour {total} liters."),
                ],
                questions: vec![
                    "How many liters per minute is that?".into(),
                    "What is the flow in liters per minute?".into(),
                    "How many liters flow per minute?".into(),
                    "What is the rate per minute?".into(),
                ],
                whole: vec![format!(
                    "A pump moves {total} liters in {t} minutes. How many liters does it move per minute?"
                )],
                solution: solution(
                    format!("{total} liters in {t} minutes."),
                    format!("{total} / {t}"),
                    "liters per minute",
                ),
            }
        },
    },
    Kind {
        name: "pct-of",
        build: |d| {
            let name = d.name();
            let (p, x) = (d.percent(), d.int(2, 4));
            Composed {
                facts: vec![
                    format!("{name} has {x} points."),
                    format!("A jar holds {x} beads."),
                    format!("The number is {x}."),
                    format!("A school has {x} students."),
                ],
                questions: vec![
                    format!("What is {p} percent of that?"),
                    format!("Find {p} percent of it."),
                    format!("How much is {p} percent of that number?"),
                    format!("Compute {p} percent of it."),
                ],
                whole: vec![
                    format!("What is {p} percent of {x}?"),
                    format!("Find {p} percent of {x}."),
                    format!("How much is {p} percent of {x}?"),
                    format!("Take {x} and compute {p} percent of it."),
                ],
                solution: solution(
                    format!("{p} percent of {x}."),
                    format!("{x} * {p} / 100"),
                    "",
                ),
            }
        },
    },
    Kind {
        name: "pct-sale",
        build: |d| {
            let (name, (item, _)) = (d.name(), d.item());
            let (x, p) = (d.int(2, 3), d.percent());
            Composed {
                facts: vec![
                    format!("A {item} costs {x} dollars and is on sale for {p} percent off."),
                    format!("A {item} priced at {x} dollars gets {p} percent off."),
                    format!(
                        "The price of a {item} is {x} dollars. A coupon takes {p} percent off."
                    ),
                    format!("A {item} that costs {x} dollars is sold with {p} percent off."),
                ],
                questions: vec![
                    "What is the sale price?".into(),
                    "What does it cost now?".into(),
                    "What is the new price?".into(),
                    format!("How much does {name} pay for it?"),
                ],
                whole: vec![format!(
                    "With {p} percent off, what does a {item} priced at {x} dollars cost?"
                )],
                solution: solution(
                    format!("{x} dollars, {p} percent off."),
                    format!("{x} - {x} * {p} / 100"),
                    "dollars",
                ),
            }
        },
    },
    Kind {
        name: "pct-rise",
        build: |d| {
            let (item, _) = d.item();
            let (x, p) = (d.int(2, 3), d.percent());
            Composed {
                facts: vec![
                    format!("A {item} costs {x} dollars. Its price rises by {p} percent."),
                    format!("The price of a {item} is {x} dollars. It goes up by {p} percent."),
                    format!("A {item} that costs {x} dollars gets {p} percent more expensive."),
                    format!("A {item} priced at {x} dollars rises {p} percent in price."),
                ],
                questions: vec![
                    "What is the new price?".into(),
                    "What does it cost now?".into(),
                    "How much is it now?".into(),
                ],
                whole: vec![format!(
                    "What does a {item} cost after its price of {x} dollars rises by {p} percent?"
                )],
                solution: solution(
                    format!("{x} dollars, up {p} percent."),
                    format!("{x} + {x} * {p} / 100"),
                    "dollars",
                ),
            }
        },
    },
    Kind {
        name: "pct-grow",
        build: |d| {
            let (x, p) = (d.int(3, 5), d.percent());
            Composed {
                facts: vec![
                    format!("A town of {x} people grows by {p} percent."),
                    format!("A city has {x} people, and the number goes up by {p} percent."),
                    format!("There are {x} people in a village. The village grows {p} percent."),
                ],
                questions: vec![
                    "What is the new population?".into(),
                    "How many people live there now?".into(),
                    "How many people are there now?".into(),
                ],
                whole: vec![format!(
                    "How many people live in a town of {x} people after it grows by {p} percent?"
                )],
                solution: solution(
                    format!("{x} people, up {p} percent."),
                    format!("{x} + {x} * {p} / 100"),
                    "people",
                ),
            }
        },
    },
    Kind {
        name: "unit-km-m",
        build: |d| {
            let name = d.name();
            let x = d.int(1, 3);
            Composed {
                facts: vec![
                    format!("A road is {x} km long."),
                    format!("A rope is {x} km long."),
                    format!("{name} walks {x} km."),
                    format!("The trail is {x} km."),
                ],
                questions: vec![
                    "How long is it in meters?".into(),
                    "How many meters is that?".into(),
                    "What is its length in meters?".into(),
                    "Convert it to meters.".into(),
                ],
                whole: vec![
                    format!("How many meters are in {x} km?"),
                    format!("Convert {x} km to meters."),
                ],
                solution: times_per_unit(x, "km", 1000, "meters", "km"),
            }
        },
    },
    Kind {
        name: "unit-h-min",
        build: |d| {
            let name = d.name();
            let x = d.int(1, 3);
            Composed {
                facts: vec![
                    format!("{name} works {x} hours."),
                    format!("A festival lasts {x} hours."),
                    format!("The trip takes {x} hours."),
                    format!("{name} sleeps {x} hours."),
                ],
                questions: vec![
                    "How many minutes is that?".into(),
                    "How long is it in minutes?".into(),
                    "Convert that to minutes.".into(),
                    "What is that in minutes?".into(),
                ],
                whole: vec![
                    format!("How many minutes are in {x} hours?"),
                    format!("Convert {x} hours to minutes."),
                ],
                solution: times_per_unit(x, "hours", 60, "minutes", "hour"),
            }
        },
    },
    Kind {
        name: "unit-kg-g",
        build: |d| {
            let name = d.name();
            let x = d.int(1, 3);
            Composed {
                facts: vec![
                    format!("{name} has {x} kg of flour."),
                    format!("A bag holds {x} kg of rice."),
                    format!("The box weighs {x} kg."),
                ],
                questions: vec![
                    "How many grams is that?".into(),
                    "What is that in grams?".into(),
                    "Convert it to grams.".into(),
                ],
                whole: vec![format!("How many grams are in {x} kg?")],
                solution: times_per_unit(x, "kg", 1000, "grams", "kg"),
            }
        },
    },
    Kind {
        name: "unit-dozen",
        build: |d| {
            let name = d.name();
            let x = d.int(1, 3);
            Composed {
                facts: vec![
                    format!("{name} buys {x} dozen eggs."),
                    format!("A farm sells {x} dozen eggs."),
                    format!("There are {x} dozen eggs in the shop."),
                ],
                questions: vec![
                    "How many eggs is that?".into(),
                    "How many eggs are there?".into(),
                    "Count the eggs.".into(),
                ],
                whole: vec![format!("How many eggs are in {x} dozen?")],
                solution: times_per_unit(x, "dozen", 12, "eggs", "dozen"),
            }
        },
    },
    Kind {
        name: "unit-min-h",
        build: |d| {
            let name = d.name();
            let x = d.int(2, 3);
            Composed {
                facts: vec![
                    format!("A game lasts {x} minutes."),
                    format!("{name} runs for {x} minutes."),
                    format!("The trip takes {x} minutes."),
                ],
                questions: vec![
                    "How many hours is that?".into(),
                    "What is that in hours?".into(),
                    "Convert it to hours.".into(),
                ],
                whole: vec![format!("How many hours are {x} minutes?")],
                solution: solution(
                    format!("{x} minutes, 60 minutes per hour."),
                    format!("{x} / 60"),
                    "hours",
                ),
            }
        },
    },
    Kind {
        name: "multi-two-items",
        build: |d| {
            let (name, ((_, xs), (_, ys)), buys) = (d.name(), d.two_items(), d.word(&BUYS));
            let (a, p, b, q) = (d.count(), d.price(), d.count(), d.price());
            Composed {
                facts: vec![
                    format!(
                        "{name} {buys} {a} {xs} at {p} dollars each and {b} {ys} at {q} dollars each."
                    ),
                    format!("{a} {xs} cost {p} dollars each, and {b} {ys} cost {q} dollars each."),
                    format!(
                        "{name} {buys} {a} {xs} at {p} dollars each. {name} also {buys} {b} {ys} at {q} dollars each."
                    ),
                    format!(
                        "There are {a} {xs} at {p} dollars each plus {b} {ys} at {q} dollars each."
                    ),
                ],
                questions: vec![
                    "What is the total cost?".into(),
                    format!("How much does {name} spend?"),
                    "How much do they cost together?".into(),
                    "What is the total?".into(),
                ],
                whole: vec![format!(
                    "What is the total cost of {a} {xs} at {p} dollars each plus {b} {ys} at {q} dollars each?"
                )],
                solution: solution(
                    format!("{a} {xs} at {p} dollars each. {b} {ys} at {q} dollars each."),
                    format!("{a} * {p} + {b} * {q}"),
                    "dollars",
                ),
            }
        },
    },
    Kind {
        name: "multi-spend-earn",
        build: |d| {
            let (name, (_, items), buys) = (d.name(), d.item(), d.word(&BUYS));
            let (x, n, p, y) = (d.int(3, 4), d.count(), d.price(), d.int(2, 3));
            Composed {
                facts: vec![
                    format!(
                        "{name} has {x} dollars, {buys} {n} {items} at {p} dollars each, and then earns {y} dollars."
                    ),
                    format!(
                        "{name} starts with {x} dollars. {name} {buys} {n} {items} at {p} dollars each, then earns {y} dollars."
                    ),
                    format!(
                        "{name} has {x} dollars. After buying {n} {items} at {p} dollars each, {name} earns {y} dollars."
                    ),
                ],
                questions: money_left_questions(name),
                whole: vec![],
                solution: solution(
                    format!("Has {x} dollars. {n} {items} at {p} dollars each. Earns {y} dollars."),
                    format!("{x} - {n} * {p} + {y}"),
                    "dollars",
                ),
            }
        },
    },
    Kind {
        name: "multi-earn-spend",
        build: |d| {
            let (name, (_, items), buys) = (d.name(), d.item(), d.word(&BUYS));
            let (x, y, n, p) = (d.int(3, 4), d.int(2, 3), d.count(), d.price());
            Composed {
                facts: vec![
                    format!(
                        "{name} starts with {x} dollars, earns {y} dollars, then {buys} {n} {items} at {p} dollars each."
                    ),
                    format!(
                        "{name} has {x} dollars. {name} earns {y} dollars and then {buys} {n} {items} at {p} dollars each."
                    ),
                    format!(
                        "{name} has {x} dollars and is paid {y} dollars. Then {name} {buys} {n} {items} at {p} dollars each."
                    ),
                ],
                questions: money_left_questions(name),
                whole: vec![],
                solution: solution(
                    format!("Has {x} dollars. Earns {y} dollars. {n} {items} at {p} dollars each."),
                    format!("{x} + {y} - {n} * {p}"),
                    "dollars",
                ),
            }
        },
    },
    Kind {
        name: "multi-boxes",
        build: |d| {
            let (name, (_, items)) = (d.name(), d.item());
            let (a, b, c) = (d.count(), d.count(), d.int(1, 2));
            Composed {
                facts: vec![
                    format!(
                        "A box holds {a} {items}. {name} has {b} boxes and gives away {c} {items}."
                    ),
                    format!(
                        "{name} has {b} boxes with {a} {items} in each box and gives away {c} {items}."
                    ),
                    format!(
                        "There are {b} boxes with {a} {items} each. {name} gives away {c} {items}."
                    ),
                    format!(
                        "{name} fills {b} boxes with {a} {items} each, then gives away {c} {items}."
                    ),
                ],
                questions: vec![
                    format!("How many {items} are left?"),
                    format!("How many {items} remain?"),
                    format!("How many {items} does {name} have now?"),
                ],
                whole: vec![],
                solution: solution(
                    format!("{b} boxes of {a} {items}. Gives away {c}."),
                    format!("{a} * {b} - {c}"),
                    items,
                ),
            }
        },
    },
    Kind {
        name: "multi-discount",
        build: |d| {
            let (name, ((_, xs), (_, ys)), buys) = (d.name(), d.two_items(), d.word(&BUYS));
            let (a, p, b, q, r) = (d.count(), d.price(), d.count(), d.price(), d.percent());
            Composed {
                facts: vec![
                    format!(
                        "{name} {buys} {a} {xs} at {p} dollars each and {b} {ys} at {q} dollars each, then gets {r} percent off the total."
                    ),
                    format!(
                        "{a} {xs} cost {p} dollars each and {b} {ys} cost {q} dollars each. The shop takes {r} percent off the total."
                    ),
                    format!(
                        "{name} {buys} {a} {xs} at {p} dollars each. {name} also {buys} {b} {ys} at {q} dollars each, with {r} percent off everything."
                    ),
                ],
                questions: vec![
                    format!("How much does {name} pay?"),
                    "What is the final cost?".into(),
                    "What is the total after the discount?".into(),
                ],
                whole: vec![],
                solution: solution(
                    format!(
                        "{a} {xs} at {p} dollars each. {b} {ys} at {q} dollars each. {r} percent off."
                    ),
                    format!("({a} * {p} + {b} * {q}) * (100 - {r}) / 100"),
                    "dollars",
                ),
            }
        },
    },
    Kind {
        name: "multi-share",
        build: |d| {
            let (_, items) = d.item();
            let (a, p, t) = (d.count(), d.price(), d.int(1, 2));
            let n = *d.rng.pick(&[2u64, 4, 5, 8, 10]);
            Composed {
                facts: vec![
                    format!(
                        "{n} friends buy {a} {items} at {p} dollars each and pay a {t} dollar fee. They split the total equally."
                    ),
                    format!(
                        "{n} friends share the cost of {a} {items} at {p} dollars each plus a {t} dollar fee."
                    ),
                    format!(
                        "A group of {n} buys {a} {items} at {p} dollars each and pays {t} dollars for delivery. The cost is split equally."
                    ),
                ],
                questions: vec![
                    "How much does each pay?".into(),
                    "What is each person's share?".into(),
                    "How much does each friend pay?".into(),
                ],
                whole: vec![],
                solution: solution(
                    format!("{a} {items} at {p} dollars each, plus {t} dollars, split {n} ways."),
                    format!("({a} * {p} + {t}) / {n}"),
                    "dollars",
                ),
            }
        },
    },
];

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

/// Openings put before some problems, in both splits.
const OPENINGS: &[&str] = &[
    "Question: ",
    "Here is a problem. ",
    "Solve this: ",
    "Quick one: ",
];

/// How a problem's text is put together from its kind's parts.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A fact sentence and a question, the question first or last.
    Pair { fact: usize, question: usize },
    /// One of the whole problems (training only).
    Whole(usize),
}

/// The shapes of a split for the `kind`-th kind, given how many sentences,
/// questions and whole problems it has.
fn shapes(kind: usize, facts: usize, questions: usize, whole: usize, split: Split) -> Vec<Shape> {
    let held_out = split == Split::HeldOut;
    let mut out: Vec<Shape> = (0..facts)
        .flat_map(|fact| (0..questions).map(move |question| (fact, question)))
        .filter(|&(fact, question)| held_out_pair(kind, fact, question) == held_out)
        .map(|(fact, question)| Shape::Pair { fact, question })
        .collect();
    if !held_out {
        out.extend((0..whole).map(Shape::Whole));
    }
    out
}

/// The template a shape of a kind is: `shop-total f1 q2` (sentence 1, question
/// 2) or `shop-total w0` (whole problem 0).
fn template_name(kind: &str, shape: Shape) -> String {
    match shape {
        Shape::Pair { fact, question } => format!("{kind} f{fact} q{question}"),
        Shape::Whole(w) => format!("{kind} w{w}"),
    }
}

/// The names of the templates of a split: each kind's pairs of a fact sentence
/// and a question that the split uses (held-out pairs are never in training),
/// and in training also its whole problems.
pub fn template_names(split: Split) -> Vec<String> {
    let mut rng = Rng::new(0);
    let mut out = Vec::new();
    for (k, kind) in KINDS.iter().enumerate() {
        let c = (kind.build)(&mut Draw {
            rng: &mut rng,
            split,
            slot: 0,
        });
        let all = shapes(k, c.facts.len(), c.questions.len(), c.whole.len(), split);
        out.extend(all.into_iter().map(|s| template_name(kind.name, s)));
    }
    out
}

/// `n` problems of `split`, the same for the same seed. Kinds are drawn at
/// random, then one of the split's templates of the kind; the question goes
/// first in a third of the problems and an opening before a quarter of them.
/// A problem whose result is not an exact, non-negative decimal is drawn again.
pub fn generate(seed: u64, split: Split, n: usize) -> Vec<Problem> {
    let calculator = Calculator::new();
    let mut rng = Rng::new(seed ^ split_salt(split));
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let k = rng.next_u64() as usize % KINDS.len();
        let kind = &KINDS[k];
        let c = (kind.build)(&mut Draw {
            rng: &mut rng,
            split,
            slot: 0,
        });
        let all = shapes(k, c.facts.len(), c.questions.len(), c.whole.len(), split);
        if all.is_empty() {
            continue;
        }
        let shape = *rng.pick(&all);
        let mut text = match shape {
            Shape::Pair { fact, question } if rng.range(0, 2) == 0 => {
                format!("{} {}", c.questions[question], c.facts[fact])
            }
            Shape::Pair { fact, question } => {
                format!("{} {}", c.facts[fact], c.questions[question])
            }
            Shape::Whole(w) => c.whole[w].clone(),
        };
        if rng.range(0, 3) == 0 {
            text = format!("{}{text}", rng.pick(OPENINGS));
        }
        let s = c.solution;
        let Ok(evaluation) = calculator.evaluate(&s.expression) else {
            continue;
        };
        let output = evaluation.to_string();
        let Some(answer) = exact_result(&output).filter(|a| !a.starts_with('-')) else {
            continue;
        };
        let answer = answer.to_owned();
        out.push(Problem {
            template: template_name(kind.name, shape),
            split,
            text,
            notes: s.notes,
            expression: s.expression,
            calculator_output: output,
            answer,
            unit: s.unit,
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
    fn held_out_templates_pair_sentences_that_training_pairs_otherwise() {
        let train: HashSet<String> = template_names(Split::Train).into_iter().collect();
        let held: HashSet<String> = template_names(Split::HeldOut).into_iter().collect();
        assert!(train.is_disjoint(&held));
        assert!(held.len() >= 60 && train.len() >= 2 * held.len());
        for kind in KINDS {
            assert!(
                held.iter()
                    .any(|t| t.starts_with(&format!("{} ", kind.name))),
                "{} has no held-out template",
                kind.name
            );
        }
        // Each sentence and each question of a held-out pair is in training with
        // another partner.
        for t in &held {
            let (kind, pair) = t.split_once(' ').expect("names are `kind pair`");
            let (fact, question) = pair.split_once(' ').expect("pairs are `fN qN`");
            let trained = |part: &str| {
                train
                    .iter()
                    .any(|u| u.starts_with(&format!("{kind} ")) && u.split(' ').any(|w| w == part))
            };
            assert!(trained(fact) && trained(question), "{t}");
        }
        // Generated problems use their split's templates, in both orders.
        let problems = generate(3, Split::HeldOut, 600);
        assert!(problems.iter().all(|p| held.contains(&p.template)));
        let question_first = problems
            .iter()
            .filter(|p| p.text.contains("? ") && !p.text.ends_with('?'))
            .count();
        assert!(question_first > 100, "{question_first}");
        assert!(
            generate(3, Split::Train, 600)
                .iter()
                .all(|p| train.contains(&p.template))
        );
    }

    #[test]
    fn same_seed_same_problems() {
        assert_eq!(generate(3, Split::Train, 50), generate(3, Split::Train, 50));
        assert_ne!(generate(3, Split::Train, 50), generate(4, Split::Train, 50));
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
    fn splits_draw_cents_from_disjoint_tens_and_train_on_every_digit() {
        let cents = |split: Split| -> Vec<(u8, u8)> {
            let mut rng = Rng::new(6);
            let mut d = Draw {
                rng: &mut rng,
                split,
                slot: 0,
            };
            (0..2000)
                .filter_map(|_| {
                    let price = d.price();
                    let (_, c) = price.split_once('.')?;
                    let c = c.as_bytes();
                    assert_eq!(c.len(), 2, "{price}");
                    Some((c[0] - b'0', c[1] - b'0'))
                })
                .collect()
        };
        let held = cents(Split::HeldOut);
        let train = cents(Split::Train);
        assert!(held.len() > 500 && train.len() > 500);
        assert!(held.iter().all(|(t, _)| [3, 6].contains(t)));
        assert!(train.iter().all(|(t, _)| ![3, 6].contains(t)));
        // Every units digit of held-out cents is drawn in training too.
        for (t, u) in held {
            assert!(train.iter().any(|&(_, v)| v == u), "{t}{u}");
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
