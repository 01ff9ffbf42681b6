//! AMQP's topic binding rules, for the embedded broker's topic exchanges: a routing key and a
//! binding pattern are words separated by `.`; in a pattern `*` stands for exactly one word
//! and `#` for zero or more.

/// Whether `key` matches binding `pattern`.
pub fn matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    matches_words(&pattern, &key)
}

fn matches_words(pattern: &[&str], key: &[&str]) -> bool {
    // Iterative with one backtracking point per `#`, as glob matchers do: linear in practice,
    // and never exponential whatever the pattern (a pattern of many `#` cannot blow up).
    let (mut p, mut k) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        match pattern.get(p) {
            Some(&"#") => {
                star = Some((p, k));
                p += 1;
            }
            Some(&word) if word == "*" || word == key[k] => {
                p += 1;
                k += 1;
            }
            _ => match star {
                // Let the last `#` take one more word, and try again from there.
                Some((sp, sk)) => {
                    p = sp + 1;
                    k = sk + 1;
                    star = Some((sp, sk + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|w| *w == "#")
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn amqp_topic_rules() {
        for (pattern, key, expected) in [
            ("Booking.*", "Booking.created", true),
            ("Booking.*", "Booking.updated", true),
            ("Booking.*", "Order.created", false),
            ("Booking.*", "Booking", false),
            ("Booking.*", "Booking.created.late", false),
            ("Booking.#", "Booking", true),
            ("Booking.#", "Booking.created.late", true),
            ("#", "anything.at.all", true),
            ("#", "", true),
            ("*", "one", true),
            ("*", "one.two", false),
            ("*.created", "Booking.created", true),
            ("#.created", "a.b.created", true),
            ("#.created", "created", true),
            ("#.created", "a.created.b", false),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
            ("a.#.z", "a.b.c", false),
            ("a.*.#.z", "a.b.z", true),
            ("a.*.#.z", "a.z", false),
            ("Booking.updated", "Booking.updated", true),
            ("Booking.updated", "Booking.Updated", false),
        ] {
            assert_eq!(matches(pattern, key), expected, "{pattern} against {key}");
        }
    }

    #[test]
    fn many_hashes_stay_cheap() {
        let pattern = vec!["#"; 200].join(".") + ".x";
        let key = vec!["a"; 200].join(".");
        // One backtracking point, not one per `#`: this returns at once rather than trying
        // every way 200 `#` could split 200 words.
        assert!(!matches(&pattern, &key));
        assert!(matches(&(pattern.clone() + ".#"), &(key.clone() + ".x")));
    }
}
