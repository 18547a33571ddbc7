//! bpftool's streaming JSON writer (json_writer.c), byte for byte: its compact form and its
//! peculiar pretty form (4-space indents, a newline before each member, arrays of scalars
//! kept on one line with the closing bracket on the next).

/// Writer state; output goes to the `String` passed to each call.
#[derive(Debug, Default)]
pub struct JsonWriter {
    depth: usize,
    pretty: bool,
    /// The separator owed before the next element (`None` right after an opening bracket).
    sep: Option<char>,
}

impl JsonWriter {
    pub fn new(pretty: bool) -> JsonWriter {
        JsonWriter {
            depth: 0,
            pretty,
            sep: None,
        }
    }

    fn indent(&self, out: &mut String) {
        for _ in 0..self.depth {
            out.push_str("    ");
        }
    }

    fn eol(&self, out: &mut String) {
        if self.pretty {
            out.push('\n');
            self.indent(out);
        }
    }

    /// End of the previous element: a comma if one is owed.
    fn eor(&mut self, out: &mut String) {
        if let Some(c) = self.sep {
            out.push(c);
        }
        self.sep = Some(',');
    }

    fn puts(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\x0c' => out.push_str("\\f"),
                '\x08' => out.push_str("\\b"),
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn begin(&mut self, out: &mut String, c: char) {
        self.eor(out);
        out.push(c);
        self.depth += 1;
        self.sep = None;
    }

    fn end(&mut self, out: &mut String, c: char) {
        self.depth = self.depth.saturating_sub(1);
        if self.sep.is_some() {
            self.eol(out);
        }
        out.push(c);
        self.sep = Some(',');
    }

    pub fn start_object(&mut self, out: &mut String) {
        self.begin(out, '{');
    }
    pub fn end_object(&mut self, out: &mut String) {
        self.end(out, '}');
    }
    pub fn start_array(&mut self, out: &mut String) {
        self.begin(out, '[');
    }
    pub fn end_array(&mut self, out: &mut String) {
        self.end(out, ']');
    }

    pub fn name(&mut self, out: &mut String, name: &str) {
        self.eor(out);
        self.eol(out);
        self.sep = None;
        Self::puts(out, name);
        out.push(':');
        if self.pretty {
            out.push(' ');
        }
    }

    /// A raw value (jsonw_printf).
    pub fn raw(&mut self, out: &mut String, text: &str) {
        self.eor(out);
        out.push_str(text);
    }

    /// A string value, quoted but not escaped (jsonw_vprintf_enquote, used for errors).
    pub fn enquote(&mut self, out: &mut String, text: &str) {
        self.eor(out);
        out.push('"');
        out.push_str(text);
        out.push('"');
    }

    pub fn string(&mut self, out: &mut String, s: &str) {
        self.eor(out);
        Self::puts(out, s);
    }
    pub fn null(&mut self, out: &mut String) {
        self.raw(out, "null");
    }
    pub fn bool(&mut self, out: &mut String, v: bool) {
        self.raw(out, if v { "true" } else { "false" });
    }
    pub fn uint(&mut self, out: &mut String, v: u64) {
        self.raw(out, &v.to_string());
    }

    pub fn string_field(&mut self, out: &mut String, name: &str, v: &str) {
        self.name(out, name);
        self.string(out, v);
    }
    pub fn uint_field(&mut self, out: &mut String, name: &str, v: u64) {
        self.name(out, name);
        self.uint(out, v);
    }
    pub fn int_field(&mut self, out: &mut String, name: &str, v: i64) {
        self.name(out, name);
        self.raw(out, &v.to_string());
    }
    pub fn bool_field(&mut self, out: &mut String, name: &str, v: bool) {
        self.name(out, name);
        self.bool(out, v);
    }
    pub fn null_field(&mut self, out: &mut String, name: &str) {
        self.name(out, name);
        self.null(out);
    }

    /// jsonw_destroy: the final newline.
    pub fn finish(&mut self, out: &mut String) {
        out.push('\n');
        self.sep = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(w: &mut JsonWriter, out: &mut String) {
        w.start_object(out);
        w.name(out, "key");
        w.start_array(out);
        for b in ["\"0x01\"", "\"0x00\""] {
            w.raw(out, b);
        }
        w.end_array(out);
        w.uint_field(out, "n", 3);
        w.end_object(out);
    }

    #[test]
    fn compact() {
        let (mut w, mut out) = (JsonWriter::new(false), String::new());
        w.start_array(&mut out);
        entry(&mut w, &mut out);
        entry(&mut w, &mut out);
        w.end_array(&mut out);
        w.finish(&mut out);
        assert_eq!(
            out,
            "[{\"key\":[\"0x01\",\"0x00\"],\"n\":3},{\"key\":[\"0x01\",\"0x00\"],\"n\":3}]\n"
        );
    }

    #[test]
    fn pretty_like_bpftool() {
        let (mut w, mut out) = (JsonWriter::new(true), String::new());
        w.start_array(&mut out);
        entry(&mut w, &mut out);
        w.end_array(&mut out);
        w.finish(&mut out);
        assert_eq!(
            out,
            "[{\n        \"key\": [\"0x01\",\"0x00\"\n        ],\n        \"n\": 3\n    }\n]\n"
        );
        let (mut w, mut out) = (JsonWriter::new(true), String::new());
        w.start_array(&mut out);
        w.end_array(&mut out);
        w.finish(&mut out);
        assert_eq!(out, "[]\n");
        let (mut w, mut out) = (JsonWriter::new(true), String::new());
        w.start_object(&mut out);
        w.name(&mut out, "error");
        w.enquote(&mut out, "x: y");
        w.end_object(&mut out);
        assert_eq!(out, "{\n    \"error\": \"x: y\"\n}");
    }

    #[test]
    fn escapes() {
        let (mut w, mut out) = (JsonWriter::new(false), String::new());
        w.string(&mut out, "a\"b\\c\n");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\"");
    }
}
