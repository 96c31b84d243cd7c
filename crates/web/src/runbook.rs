//! Runbooks (Markdown under `ops/runbooks/`) rendered to HTML for the
//! incident page. Raw HTML in a runbook is shown as text, never passed
//! through; a runbook path that leaves the root is refused.

use std::path::{Component, Path};

use maud::{Markup, html};
use pulldown_cmark::{Event, Options, Parser};

/// The shipped runbooks, for a server started away from a checkout: the
/// path in the record is looked up on disk first.
const SHIPPED: [(&str, &str); 8] = [
    ("ops/runbooks/billing_dispute.md", include_str!("../../../ops/runbooks/billing_dispute.md")),
    ("ops/runbooks/illegal_transition.md", include_str!("../../../ops/runbooks/illegal_transition.md")),
    ("ops/runbooks/invariant_violation.md", include_str!("../../../ops/runbooks/invariant_violation.md")),
    ("ops/runbooks/onboarding_failed.md", include_str!("../../../ops/runbooks/onboarding_failed.md")),
    ("ops/runbooks/provisioning_failed.md", include_str!("../../../ops/runbooks/provisioning_failed.md")),
    ("ops/runbooks/quota_breach.md", include_str!("../../../ops/runbooks/quota_breach.md")),
    ("ops/runbooks/regional_outage.md", include_str!("../../../ops/runbooks/regional_outage.md")),
    ("ops/runbooks/stuck.md", include_str!("../../../ops/runbooks/stuck.md")),
];

/// The runbook at `path` (relative to `root`) as HTML, or a note saying
/// why it cannot be shown.
pub(crate) fn render(root: &Path, path: &str) -> Markup {
    let relative = Path::new(path);
    if relative.is_absolute() || relative.components().any(|part| !matches!(part, Component::Normal(_))) {
        return html! { p.none { "The runbook path " code { (path) } " leaves the runbook root: not shown." } };
    }
    let text = match std::fs::read_to_string(root.join(relative)) {
        Ok(text) => text,
        Err(_) => match SHIPPED.iter().find(|(shipped, _)| *shipped == path) {
            Some((_, text)) => (*text).to_string(),
            None => {
                return html! { p.none { "The runbook " code { (path) } " is not under " code { (root.display()) } "." } };
            }
        },
    };
    crate::pages::trusted(to_html(&text))
}

/// Markdown to HTML with every raw HTML block or span turned into text.
fn to_html(markdown: &str) -> String {
    let parser = Parser::new_ext(markdown, Options::ENABLE_TABLES).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_in_a_runbook_is_text() {
        let html = to_html("# Title\n\n<script>alert(1)</script>\n\nsee <img src=x onerror=alert(1)>\n");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
    }

    #[test]
    fn a_path_out_of_the_root_is_refused() {
        let shown = render(Path::new("/nonexistent"), "../../etc/passwd").into_string();
        assert!(shown.contains("leaves the runbook root"), "{shown}");
        let shipped = render(Path::new("/nonexistent"), "ops/runbooks/stuck.md").into_string();
        assert!(shipped.contains("<h1>stuck</h1>"), "{shipped}");
    }
}
