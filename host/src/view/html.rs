//! The report page: one HTML file with everything inline (styles, script, feature figures as
//! SVG or, when that would be large, PNG; experiment figures as PNG `data:` URIs), so it opens
//! offline, can be mailed as one file and loads nothing from anywhere. It is laid out for a screen and, through print styles, for A4
//! paper (one chip per page, figures never split).

use std::fmt::Write;
use std::path::Path;

use base64::Engine;
use chrono::NaiveDateTime;

use super::curves::ExperimentCurves;
use super::figure::Frame;
use super::table::Output;

/// One line of the summary table.
#[derive(Debug, Clone)]
pub struct Row {
    pub chip: String,
    pub device: String,
    /// The experiment file's name.
    pub experiment: String,
    pub config: String,
    pub steps: String,
    pub failed: u64,
    pub failure_reasons: Vec<String>,
    pub no_fit: u64,
    pub no_fit_reasons: Vec<String>,
    pub nonfinite: u64,
    pub nonfinite_detail: Vec<String>,
    pub span: String,
    /// Where the experiment file is (or was, when it was not found).
    pub source: String,
    /// The output file and what made it.
    pub provenance: Vec<String>,
}

fn when(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 2.0 * 86_400.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} d", s / 86_400.0),
    }
}

/// `word` or `words` to follow the count `n`.
fn plural(n: usize, word: &str) -> String {
    match n {
        1 => word.to_string(),
        _ => format!("{word}s"),
    }
}

/// One line per recorded reason of `feature`, then one for the `total − listed` steps whose
/// reason was not kept (`more(count, " more" or "")` words them).
fn reason_lines(
    feature: &str,
    reasons: &[(String, usize)],
    total: u64,
    more: impl Fn(usize, &str) -> String,
) -> Vec<String> {
    let listed: usize = reasons.iter().map(|r| r.1).sum();
    let mut lines: Vec<String> = reasons
        .iter()
        .map(|(message, n)| format!("{feature}: {message} (×{n})"))
        .collect();
    if total as usize > listed {
        let what = if listed == 0 { "" } else { " more" };
        lines.push(format!(
            "{feature}: {}",
            more(total as usize - listed, what)
        ));
    }
    lines
}

fn span_text(span: Option<(NaiveDateTime, NaiveDateTime)>) -> Option<String> {
    let (a, b) = span?;
    let secs = (b - a).num_milliseconds() as f64 / 1000.0;
    let end = match a.date() == b.date() {
        true => b.format("%H:%M").to_string(),
        false => when(&b),
    };
    Some(format!("{} → {end} ({})", when(&a), duration(secs)))
}

fn step_counts<'a>(counts: impl Iterator<Item = (&'a str, u64)>) -> String {
    let parts: Vec<String> = counts.map(|(k, n)| format!("{k} {n}")).collect();
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join(" · ")
    }
}

impl Row {
    /// The row of a feature output; `file` is its experiment file when it was found.
    pub fn of_output(
        o: &Output,
        file: Option<&Path>,
        span: Option<(NaiveDateTime, NaiveDateTime)>,
    ) -> Row {
        let mut failure_reasons = Vec::new();
        let mut no_fit_reasons = Vec::new();
        let mut nonfinite_detail = Vec::new();
        for h in &o.health {
            failure_reasons.extend(reason_lines(
                &h.feature,
                &h.reasons,
                h.failed,
                |more, what| format!("{more}{what} failed {}", plural(more, "step")),
            ));
            no_fit_reasons.extend(reason_lines(
                &h.feature,
                &h.no_fit_reasons,
                h.no_fit,
                |more, what| format!("{more}{what} {} without a fit", plural(more, "step")),
            ));
            if h.nonfinite > 0 {
                nonfinite_detail.push(format!("{}: {}", h.feature, h.nonfinite));
            }
        }
        // The experiment file's (first start to last end), else the output's step starts.
        let span = span_text(span.or(o.span)).unwrap_or_else(|| "— (no step times)".into());
        let c = &o.created_at;
        let provenance = vec![
            o.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            format!(
                "config hash {} · oect {} · {} · written {}",
                o.config_hash8,
                o.oect_version,
                o.plugins.join(", "),
                c.get(..16).unwrap_or(c).replace('T', " ")
            ),
        ];
        let source = match file {
            Some(f) => f.display().to_string(),
            None => format!("{} (not found)", o.source_file.display()),
        };
        Row {
            chip: o.chip_id.clone(),
            device: o.device_id.clone(),
            experiment: o
                .source_file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| o.test_id.clone()),
            config: o.config_name.clone(),
            steps: step_counts(o.step_counts.iter().map(|(k, n)| (k.as_str(), *n as u64))),
            failed: o.health.iter().map(|h| h.failed).sum(),
            failure_reasons,
            no_fit: o.health.iter().map(|h| h.no_fit).sum(),
            no_fit_reasons,
            nonfinite: o.health.iter().map(|h| h.nonfinite).sum(),
            nonfinite_detail,
            span,
            source,
            provenance,
        }
    }

    /// The row of an experiment file that no output in the inputs belongs to.
    pub fn of_experiment(path: &Path, c: &ExperimentCurves) -> Row {
        let counts = [
            ("transfer", c.transfer_steps as u64),
            ("transient", c.transient_steps as u64),
        ];
        Row {
            chip: c.chip_id.clone(),
            device: c.device_id.clone(),
            experiment: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            config: "—".into(),
            steps: step_counts(counts.into_iter().filter(|c| c.1 > 0)),
            failed: 0,
            failure_reasons: vec!["no feature output in the inputs".into()],
            no_fit: 0,
            no_fit_reasons: Vec::new(),
            nonfinite: 0,
            nonfinite_detail: Vec::new(),
            span: span_text(c.span).unwrap_or_else(|| "—".into()),
            source: path.display().to_string(),
            provenance: Vec::new(),
        }
    }
}

/// How a feature figure is put on the page.
pub enum Image {
    /// Inline SVG.
    Svg(String),
    /// A PNG (as a `data:` URI) of `width` pixels.
    Png { bytes: Vec<u8>, width: u32 },
}

/// A feature figure of one chip and config.
pub struct FeaturePanel {
    pub chip: String,
    pub config: String,
    pub feature: String,
    pub image: Image,
    pub frame: Option<Frame>,
}

/// The figures of one experiment file, as PNG bytes (or why one could not be drawn).
pub struct ExperimentPanel {
    pub chip: String,
    pub device: String,
    pub name: String,
    pub transfer: Option<Result<Vec<u8>, String>>,
    pub transient: Option<Result<Vec<u8>, String>>,
}

pub struct Content {
    pub rows: Vec<Row>,
    pub figures: Vec<FeaturePanel>,
    pub experiments: Vec<ExperimentPanel>,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
}

pub struct Page {
    pub html: String,
    /// Figures that could not be drawn (they are named on the page too).
    pub problems: Vec<String>,
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// plotters' SVG as an inline element: no XML prolog, no namespace URL (HTML needs none and the
/// page must name no external address), scaled by CSS instead of fixed pixel sizes.
fn inline_svg(svg: &str) -> String {
    let svg = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    };
    let Some(end) = svg.find('>') else {
        return svg.to_string();
    };
    let (open, rest) = svg.split_at(end);
    let open: Vec<&str> = open
        .split(' ')
        .filter(|a| {
            !a.starts_with("xmlns") && !a.starts_with("width=") && !a.starts_with("height=")
        })
        .collect();
    format!("{}{rest}", open.join(" "))
}

const STYLE: &str = r#"
:root { --ink: #1d1d1f; --muted: #5a5a5a; --line: #d8d8d8; --bad: #b3261e; --soft: #f6f6f4; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 1.5rem 2rem 4rem; max-width: 1500px; line-height: 1.4; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.35rem; border-bottom: 2px solid var(--ink); padding-bottom: .2rem; margin-top: 2.5rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .5rem; color: var(--muted); }
h4 { font-size: .95rem; margin: 1rem 0 .3rem; }
.meta { color: var(--muted); margin: 0 0 1rem; }
nav { margin: .5rem 0 1rem; font-size: .9rem; }
nav a { margin-right: .9rem; white-space: nowrap; color: #1f5fa8; }
.notes { background: var(--soft); border-left: 4px solid #c9a227; padding: .5rem 1rem; margin: 1rem 0; }
.notes.bad { border-left-color: var(--bad); }
.notes li { margin: .15rem 0; }
table { border-collapse: collapse; width: 100%; font-size: .82rem; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .45rem; text-align: left; vertical-align: top; }
th { background: var(--soft); position: sticky; top: 0; }
td.count { min-width: 7rem; max-width: 26rem; font-variant-numeric: tabular-nums; }
td.count b { font-size: .9rem; }
td.bad b { color: var(--bad); }
td ul { margin: .15rem 0 0; padding-left: 1rem; color: var(--muted); overflow-wrap: anywhere; }
td.file { overflow-wrap: anywhere; min-width: 10rem; }
td.prov { color: var(--muted); font-size: .72rem; min-width: 16rem; overflow-wrap: anywhere; }
td .src { color: var(--muted); font-size: .72rem; margin-top: .2rem; }
tbody { border-bottom: 2px solid var(--line); break-inside: avoid; }
tbody tr:not(:last-child) td { border-bottom-style: dotted; }
tbody tr td.g { border-bottom-style: solid; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: .8rem 1.2rem; }
figure { margin: 0; break-inside: avoid; page-break-inside: avoid; }
figure svg, figure img { width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { font-size: .8rem; color: var(--muted); min-height: 1.2em; }
.readout { font-variant-numeric: tabular-nums; }
.missing { color: var(--bad); font-size: .85rem; }
#js-errors { color: var(--bad); white-space: pre-wrap; }
@page { size: A4; margin: 12mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 9pt; }
  nav, .readout, .hint { display: none; }
  section.chip { break-before: page; page-break-before: always; }
  .grid { grid-template-columns: 1fr 1fr; }
  th { position: static; }
  tr { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// Shows the data coordinates under the pointer on feature figures.
const SCRIPT: &str = r#"
(function () {
  function fmt(v) {
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
    return String(Number(v.toPrecision(4)));
  }
  document.querySelectorAll('figure[data-frame]').forEach(function (fig) {
    var f = JSON.parse(fig.getAttribute('data-frame'));
    var svg = fig.querySelector('svg, img');
    var out = fig.querySelector('.readout');
    if (!svg || !out) return;
    svg.addEventListener('mousemove', function (ev) {
      var r = svg.getBoundingClientRect();
      var k = f.w / r.width;
      var px = (ev.clientX - r.left) * k, py = (ev.clientY - r.top) * k;
      var l = f.px[0], t = f.px[1], rr = f.px[2], b = f.px[3];
      if (px < l || px > rr || py < t || py > b) { out.textContent = ''; return; }
      var x = f.x[0] + (px - l) / (rr - l) * (f.x[1] - f.x[0]);
      var y = f.y[1] - (py - t) / (b - t) * (f.y[1] - f.y[0]);
      out.textContent = f.xl + ' ' + fmt(x) + ' · ' + f.yl + ' ' + fmt(y);
    });
    svg.addEventListener('mouseleave', function () { out.textContent = ''; });
  });
  document.documentElement.setAttribute('data-ready', 'yes');
})();
"#;

/// Records script errors on the page itself, so a broken page says so (and tests can tell).
const ERROR_HOOK: &str = r#"window.addEventListener('error', function (e) {
  var p = document.getElementById('js-errors');
  if (p) { p.hidden = false; p.textContent += (e.message || 'script error') + '\n'; }
});"#;

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut s = String::from("<ul>");
    for i in items.iter().take(8) {
        let _ = write!(s, "<li>{}</li>", esc(i));
    }
    if items.len() > 8 {
        let _ = write!(s, "<li>… {} more</li>", items.len() - 8);
    }
    s.push_str("</ul>");
    s
}

fn png_img(bytes: &[u8], alt: &str) -> String {
    format!(
        r#"<figure><img alt="{}" src="data:image/png;base64,{}"></figure>"#,
        esc(alt),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The whole page.
pub fn page(c: &Content) -> Page {
    let mut problems = Vec::new();
    let mut chips: Vec<&str> = c
        .rows
        .iter()
        .map(|r| r.chip.as_str())
        .chain(c.figures.iter().map(|f| f.chip.as_str()))
        .chain(c.experiments.iter().map(|e| e.chip.as_str()))
        .collect();
    chips.sort();
    chips.dedup();
    let mut configs: Vec<&str> = c
        .rows
        .iter()
        .map(|r| r.config.as_str())
        .filter(|c| *c != "—")
        .collect();
    configs.sort();
    configs.dedup();
    let mut experiments: Vec<&str> = c.rows.iter().map(|r| r.experiment.as_str()).collect();
    experiments.sort();
    experiments.dedup();

    let mut h = String::with_capacity(1 << 20);
    let title = format!(
        "oect report — {} experiment{} on {} chip{}",
        experiments.len(),
        if experiments.len() == 1 { "" } else { "s" },
        chips.len(),
        if chips.len() == 1 { "" } else { "s" }
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n<script>{ERROR_HOOK}</script>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(
        h,
        "<header><h1>{}</h1><p class=\"meta\">configs: {} · generated {} by oect {}\
         <span class=\"hint\"> · point at a feature figure to read its values</span></p>\
         <p id=\"js-errors\" hidden></p></header>",
        esc(&title),
        esc(&if configs.is_empty() {
            "—".to_string()
        } else {
            configs.join(", ")
        }),
        chrono::Local::now().format("%Y-%m-%d %H:%M"),
        env!("CARGO_PKG_VERSION")
    );
    h.push_str("<nav><a href=\"#summary\">Summary</a>");
    for (i, chip) in chips.iter().enumerate() {
        let _ = write!(h, "<a href=\"#chip-{i}\">chip {}</a>", esc(chip));
    }
    h.push_str("</nav>\n");
    if !c.problems.is_empty() {
        let _ = writeln!(
            h,
            "<div class=\"notes bad\"><strong>Problems</strong>{}</div>",
            list(&c.problems)
        );
    }
    if !c.notes.is_empty() {
        let _ = writeln!(
            h,
            "<div class=\"notes\"><strong>Notes</strong>{}</div>",
            list(&c.notes)
        );
    }

    h.push_str(
        "<section id=\"summary\"><h2>Experiments</h2>\n<table>\n<thead><tr><th>Chip</th>\
         <th>Device</th><th>Experiment file</th><th>Time span</th><th>Config</th><th>Steps</th>\
         <th>Failed steps</th><th>No fit</th><th>NaN / ±inf</th><th>Output</th>\
         </tr></thead>\n",
    );
    // One group of rows per experiment file (one row per config), its own cells spanning them.
    let mut rest: &[Row] = &c.rows;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|r| {
                (&r.chip, &r.device, &r.experiment, &r.source)
                    == (&first.chip, &first.device, &first.experiment, &first.source)
            })
            .count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        h.push_str("<tbody>");
        for (i, r) in group.iter().enumerate() {
            h.push_str("<tr>");
            if i == 0 {
                let _ = write!(
                    h,
                    "<td rowspan=\"{n}\" class=\"g\">{}</td><td rowspan=\"{n}\" class=\"g\">{}</td>\
                     <td rowspan=\"{n}\" class=\"g file\">{}<div class=\"src\">{}</div></td>\
                     <td rowspan=\"{n}\" class=\"g\">{}</td>",
                    esc(&r.chip),
                    esc(&r.device),
                    esc(&r.experiment),
                    esc(&r.source),
                    esc(&r.span),
                );
            }
            let bad = |n: u64| if n > 0 { "count bad" } else { "count" };
            let _ = writeln!(
                h,
                "<td>{}</td><td>{}</td><td class=\"{}\"><b>{}</b>{}</td>\
                 <td class=\"count\"><b>{}</b>{}</td><td class=\"count\"><b>{}</b>{}</td>\
                 <td class=\"prov\">{}</td></tr>",
                esc(&r.config),
                esc(&r.steps),
                bad(r.failed),
                r.failed,
                list(&r.failure_reasons),
                r.no_fit,
                list(&r.no_fit_reasons),
                r.nonfinite,
                list(&r.nonfinite_detail),
                r.provenance
                    .iter()
                    .map(|p| esc(p))
                    .collect::<Vec<_>>()
                    .join("<br>")
            );
        }
        h.push_str("</tbody>\n");
    }
    h.push_str("</table></section>\n");

    for (i, chip) in chips.iter().enumerate() {
        let _ = writeln!(
            h,
            "<section class=\"chip\" id=\"chip-{i}\"><h2>Chip {}</h2>",
            esc(chip)
        );
        let figs: Vec<&FeaturePanel> = c.figures.iter().filter(|f| f.chip == *chip).collect();
        let mut fig_configs: Vec<&str> = figs.iter().map(|f| f.config.as_str()).collect();
        fig_configs.dedup();
        for config in fig_configs {
            let _ = write!(
                h,
                "<h3>Features — config {}</h3>\n<div class=\"grid\">\n",
                esc(config)
            );
            for f in figs.iter().filter(|f| f.config == config) {
                let (body, width) = match &f.image {
                    Image::Svg(svg) => (inline_svg(svg), svg_width(svg)),
                    Image::Png { bytes, width } => (
                        format!(
                            r#"<img alt="{}" src="data:image/png;base64,{}">"#,
                            esc(&f.feature),
                            base64::engine::general_purpose::STANDARD.encode(bytes)
                        ),
                        f64::from(*width),
                    ),
                };
                let frame = f.frame.as_ref().map(|fr| {
                    serde_json::json!({
                        "px": fr.px, "x": [fr.x.0, fr.x.1], "y": [fr.y.0, fr.y.1],
                        "xl": fr.x_label, "yl": fr.y_label, "w": width,
                    })
                    .to_string()
                });
                let attr = frame
                    .map(|j| format!(" data-frame=\"{}\"", esc(&j)))
                    .unwrap_or_default();
                let _ = writeln!(
                    h,
                    "<figure class=\"plot\"{attr} aria-label=\"{}\">{}<figcaption><span class=\"readout\"></span></figcaption></figure>",
                    esc(&f.feature),
                    body
                );
            }
            h.push_str("</div>\n");
        }
        let exps: Vec<&ExperimentPanel> =
            c.experiments.iter().filter(|e| e.chip == *chip).collect();
        if !exps.is_empty() {
            h.push_str("<h3>Experiment files</h3>\n");
        }
        for e in exps {
            let _ = write!(
                h,
                "<h4>device {} — {}</h4>\n<div class=\"grid\">",
                esc(&e.device),
                esc(&e.name)
            );
            for (kind, fig) in [
                ("transfer curves", &e.transfer),
                ("transient", &e.transient),
            ] {
                match fig {
                    Some(Ok(png)) => h.push_str(&png_img(png, &format!("{kind} of {}", e.name))),
                    Some(Err(why)) => {
                        let _ = write!(
                            h,
                            "<p class=\"missing\">{kind}: could not be drawn ({})</p>",
                            esc(why)
                        );
                        problems.push(format!("{}: {kind} figure: {why}", e.name));
                    }
                    None => {}
                }
            }
            h.push_str("</div>\n");
        }
        h.push_str("</section>\n");
    }
    let _ = write!(h, "<script>{SCRIPT}</script>\n</body>\n</html>\n");
    Page { html: h, problems }
}

/// The width plotters gave the SVG (its `viewBox` width), for mapping pointer positions.
fn svg_width(svg: &str) -> f64 {
    svg.split("viewBox=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|v| v.split_whitespace().nth(2))
        .and_then(|w| w.parse().ok())
        .unwrap_or(1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_is_inlined_without_namespace_url_or_fixed_size() {
        let svg = r#"<?xml version="1.0"?><svg width="1000" height="520" viewBox="0 0 1000 520" xmlns="http://www.w3.org/2000/svg"><rect/></svg>"#;
        let inline = inline_svg(svg);
        assert_eq!(inline, r#"<svg viewBox="0 0 1000 520"><rect/></svg>"#);
        assert_eq!(svg_width(svg), 1000.0);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
