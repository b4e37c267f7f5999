//! `spec.selector` of a KubeArmorPolicy or KubeArmorClusterPolicy: its `matchLabels` and `matchExpressions`.

use super::fields::{Ctx, Res, is_empty, text};
use super::model::{At, Expression, Selector, Src};
use super::report::{Report, ReportKind};
use super::yaml::{Node, Value};

/// `spec.selector` of a KubeArmorPolicy or KubeArmorClusterPolicy: its `matchLabels` and `matchExpressions`;
/// any other part is reported.
pub(super) fn selector_labels(ctx: &Ctx<'_>, sel: &Node, out: &mut Selector, reports: &mut Vec<Report>) -> Res<()> {
    match &sel.value {
        Value::Null => return Ok(()),
        Value::Map(_) => {}
        other => return Err(ctx.error(sel, "spec.selector", format!("expected a mapping, found {}", other.kind()))),
    }
    for (key, value) in sel.entries() {
        let path = format!("spec.selector.{key}");
        match (key.as_str(), &value.value) {
            ("matchLabels", Value::Null) => {}
            ("matchLabels", Value::Map(_)) => {
                for (k, v) in value.entries() {
                    let kpath = format!("{path}.{k}");
                    let v_text = if v.is_null() { String::new() } else { text(ctx, v, &kpath)? };
                    let key_node = value.key_node(&k).unwrap_or(v);
                    out.labels.push((
                        At { value: k.clone(), src: Src::at(&kpath, key_node) },
                        At { value: v_text, src: Src::at(&kpath, v) },
                    ));
                }
            }
            ("matchLabels", other) => {
                return Err(ctx.error(value, &path, format!("expected a mapping of labels, found {}", other.kind())));
            }
            ("matchExpressions", _) if is_empty(value) => {}
            ("matchExpressions", Value::Seq(items)) => {
                for (i, item) in items.iter().enumerate() {
                    out.expressions.push(expression(ctx, item, &format!("{path}[{i}]"), reports)?);
                }
            }
            ("matchExpressions", other) => {
                return Err(ctx.error(
                    value,
                    &path,
                    format!("expected a list of {{key, operator, values}}, found {}", other.kind()),
                ));
            }
            _ => reports.push(ctx.report(
                ReportKind::NotEnforced,
                value,
                path,
                "unknown key; noexecd selects by matchLabels, matchExpressions and the namespace",
            )),
        }
    }
    Ok(())
}

/// One `matchExpressions` entry. Its key and operator are written as they are: the loader refuses those
/// KubeArmor's CRDs refuse (`Exists`), and the policy with them, rather than select more containers.
fn expression(ctx: &Ctx<'_>, item: &Node, path: &str, reports: &mut Vec<Report>) -> Res<Expression> {
    if !matches!(item.value, Value::Map(_)) {
        return Err(ctx.error(item, path, format!("expected {{key, operator, values}}, found {}", item.value.kind())));
    }
    let mut key = None;
    let mut operator = None;
    let mut values = Vec::new();
    for (k, value) in item.entries() {
        let kpath = format!("{path}.{k}");
        match k.as_str() {
            "key" => key = Some(At { value: text(ctx, value, &kpath)?, src: Src::at(&kpath, value) }),
            "operator" => operator = Some(At { value: text(ctx, value, &kpath)?, src: Src::at(&kpath, value) }),
            "values" => match &value.value {
                Value::Null => {}
                Value::Seq(items) => {
                    for (i, v) in items.iter().enumerate() {
                        let vpath = format!("{kpath}[{i}]");
                        values.push(At { value: text(ctx, v, &vpath)?, src: Src::at(&vpath, v) });
                    }
                }
                other => {
                    return Err(ctx.error(value, &kpath, format!("expected a list of values, found {}", other.kind())));
                }
            },
            _ => reports.push(ctx.report(ReportKind::NotEnforced, value, kpath, "unknown key")),
        }
    }
    let key = key.ok_or_else(|| ctx.error(item, path, "key is missing: write key: label or key: namespace"))?;
    let operator =
        operator.ok_or_else(|| ctx.error(item, path, "operator is missing: write operator: In or operator: NotIn"))?;
    Ok(Expression { src: Src::at(path, item), key, operator, values })
}
