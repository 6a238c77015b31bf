//! Checks on email addresses: syntax, the fake-address denylist and the signup throttle.

/// Message for an address that is not syntactically valid.
pub(crate) const INVALID_EMAIL: &str = "Please provide a valid email address.";

/// Returns whether `email` looks like an address: one `@`, a non-empty local part, a domain
/// with a dot, and no whitespace inside.
pub(crate) fn is_valid(email: &str) -> bool {
    let email = email.trim();
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
}

/// Returns the lower-cased address with any `+tag` removed from the local part.
pub(crate) fn base_address(email: &str) -> String {
    let email = email.trim().to_lowercase();
    match email.split_once('@') {
        Some((local, domain)) => {
            let local = local.split_once('+').map_or(local, |(base, _)| base);
            format!("{local}@{domain}")
        }
        None => email,
    }
}

/// Returns whether the denylist marks `email` as fake: its domain is listed, or its local part
/// without a `+tag` is.
pub(crate) fn looks_fake(
    email: &str,
    fake_domains: &[String],
    fake_local_parts: &[String],
) -> bool {
    let base = base_address(email);
    let Some((local, domain)) = base.split_once('@') else {
        return false;
    };
    fake_domains
        .iter()
        .any(|fake| fake.eq_ignore_ascii_case(domain))
        || fake_local_parts
            .iter()
            .any(|fake| fake.eq_ignore_ascii_case(local))
}

pub(crate) fn looks_fake_message(email: &str) -> String {
    format!("{email} looks fake or invalid, please enter a real email address.")
}

pub(crate) fn throttled_message(email: &str) -> String {
    format!(
        "{email} has signed up to a lot of lists very recently; \
         we're not allowing more signups for now"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn syntax_checks() {
        assert!(is_valid("jane@forum.dev"));
        assert!(is_valid("  jane+news@forum.dev "));
        assert!(!is_valid("jane"));
        assert!(!is_valid("@forum.dev"));
        assert!(!is_valid("jane@localhost"));
        assert!(!is_valid("jane@@forum.dev"));
        assert!(!is_valid("ja ne@forum.dev"));
        assert!(!is_valid("jane@forum.dev."));
    }

    #[test]
    fn base_address_strips_plus_tag() {
        assert_eq!(base_address(" Jane+News@Forum.dev"), "jane@forum.dev");
        assert_eq!(base_address("jane@forum.dev"), "jane@forum.dev");
    }

    #[test]
    fn denylist_matches_domain_and_local_part() {
        let domains = strings(&["example.com"]);
        let locals = strings(&["test"]);
        assert!(looks_fake("john.doe@Example.com", &domains, &locals));
        assert!(looks_fake("test+1@gmail.com", &domains, &locals));
        assert!(!looks_fake("tester@gmail.com", &domains, &locals));
        assert!(!looks_fake("jane@example.com.au", &domains, &locals));
    }
}
