//! Text kept within a byte budget (log lines, response excerpts) without splitting a
//! character.

/// Cuts `text` to at most `max_bytes`, at a character boundary; whether it was cut.
pub fn cut_to(text: &mut String, max_bytes: usize) -> bool {
    if text.len() <= max_bytes {
        return false;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use super::cut_to;

    #[test]
    fn cuts_at_a_character_boundary() {
        let mut text = "aé€".to_owned(); // 1 + 2 + 3 bytes
        assert!(!cut_to(&mut text, 6));
        assert!(cut_to(&mut text, 5));
        assert_eq!(text, "aé");
        assert!(cut_to(&mut text, 2));
        assert_eq!(text, "a");
    }
}
