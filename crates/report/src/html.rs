//! A self-contained HTML page built in memory: headings, paragraphs, tables, preformatted
//! text and inline SVG, with one inline stylesheet; every text is escaped. No script, no
//! link, no reference to a file or URL outside the page.

/// Escapes `&`, `<`, `>`, `"` and `'` for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            c => s.push(c),
        }
    }
    s
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
color:#222}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;\
padding:.25em .6em;text-align:left}td.n{text-align:right}pre{background:#f4f4f4;padding:.6em;\
overflow-x:auto}figure{margin:1em 0}.reproduced{color:#176f1a}.not-reproduced{color:#b00020}\
.inconclusive{color:#8a6d00}";

/// A page under construction.
#[derive(Debug, Clone)]
pub struct Page {
    body: String,
}

impl Page {
    /// A page whose title and first heading are `title`.
    pub fn new(title: &str) -> Self {
        Page {
            body: format!(
                "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
                 <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n",
                t = escape(title)
            ),
        }
    }

    /// A section heading with an id (the id is escaped).
    pub fn heading(&mut self, id: &str, text: &str) -> &mut Self {
        self.body.push_str(&format!(
            "<h2 id=\"{}\">{}</h2>\n",
            escape(id),
            escape(text)
        ));
        self
    }

    /// A paragraph of text.
    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        self.body.push_str(&format!("<p>{}</p>\n", escape(text)));
        self
    }

    /// A bulleted list, each item escaped; an item may carry a CSS class (e.g. a verdict's).
    pub fn list(&mut self, items: &[(Option<&str>, String)]) -> &mut Self {
        self.body.push_str("<ul>\n");
        for (class, text) in items {
            match class {
                Some(c) => self.body.push_str(&format!(
                    "<li class=\"{}\">{}</li>\n",
                    escape(c),
                    escape(text)
                )),
                None => self.body.push_str(&format!("<li>{}</li>\n", escape(text))),
            }
        }
        self.body.push_str("</ul>\n");
        self
    }

    /// A table with an id, a header row and body rows (cells escaped; a cell that parses as a
    /// number is right-aligned).
    pub fn table(&mut self, id: &str, header: &[&str], rows: &[Vec<String>]) -> &mut Self {
        self.body
            .push_str(&format!("<table id=\"{}\">\n<thead><tr>", escape(id)));
        for h in header {
            self.body.push_str(&format!("<th>{}</th>", escape(h)));
        }
        self.body.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            self.body.push_str("<tr>");
            for cell in row {
                let numeric = cell
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<f64>().is_ok());
                let class = if numeric { " class=\"n\"" } else { "" };
                self.body
                    .push_str(&format!("<td{class}>{}</td>", escape(cell)));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody>\n</table>\n");
        self
    }

    /// Preformatted text (commands, a config file).
    pub fn pre(&mut self, text: &str) -> &mut Self {
        self.body
            .push_str(&format!("<pre>{}</pre>\n", escape(text.trim_end())));
        self
    }

    /// An SVG document drawn by this crate, inline in a figure with an id and a caption.
    pub fn figure(&mut self, id: &str, svg: &str, caption: &str) -> &mut Self {
        self.body.push_str(&format!(
            "<figure id=\"{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            escape(id),
            strip_prolog(svg),
            escape(caption)
        ));
        self
    }

    /// The finished page.
    pub fn finish(mut self) -> String {
        self.body.push_str("</body>\n</html>\n");
        self.body
    }
}

/// An SVG document without an XML declaration (not allowed inside HTML).
fn strip_prolog(svg: &str) -> &str {
    let s = svg.trim();
    match s.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or(s, |(_, r)| r.trim_start()),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
        let mut p = Page::new("<t>");
        p.heading("x\"", "<h>")
            .table("t", &["<a>"], &[vec!["1.5 [n/a]".into(), "<b>".into()]])
            .figure("f", "<?xml version=\"1.0\"?>\n<svg></svg>", "c");
        let html = p.finish();
        assert!(html.contains("<title>&lt;t&gt;</title>"));
        assert!(html.contains("<h2 id=\"x&quot;\">&lt;h&gt;</h2>"));
        assert!(html.contains("<td class=\"n\">1.5 [n/a]</td><td>&lt;b&gt;</td>"));
        assert!(html.contains("<figure id=\"f\">\n<svg></svg>"), "{html}");
        assert!(!html.contains("<?xml"));
    }
}
