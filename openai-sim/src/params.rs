//! Readers of request parameters (HTTP bodies and Realtime client events) that refuse a
//! missing or mistyped value with the service's error naming it, so every API words the same
//! mistake the same way.

use serde_json::Value;

use super::error::ApiError;

/// A string at `param`; `None` when absent or `null`.
pub(crate) fn optional_string<'a>(
    value: Option<&'a Value>,
    param: &str,
) -> Result<Option<&'a str>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(ApiError::invalid_type(param, "a string", other)),
    }
}

/// A boolean at `param`; `None` when absent or `null`.
pub(crate) fn optional_bool(value: Option<&Value>, param: &str) -> Result<Option<bool>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(other) => Err(ApiError::invalid_type(param, "a boolean", other)),
    }
}

/// A string at `param` that must be there (`null` counts as missing).
pub(crate) fn required_string(value: Option<&Value>, param: &str) -> Result<String, ApiError> {
    optional_string(value, param)?
        .map(str::to_owned)
        .ok_or_else(|| ApiError::missing(param))
}

/// One of the strings `allowed` at `param` (as `allowed` holds it); `None` when absent or
/// `null`.
pub(crate) fn optional_choice<'a>(
    value: Option<&Value>,
    param: &str,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, ApiError> {
    let Some(got) = optional_string(value, param)? else {
        return Ok(None);
    };
    match allowed.iter().find(|choice| **choice == got) {
        Some(choice) => Ok(Some(choice)),
        None => Err(ApiError::invalid_value(param, got, allowed)),
    }
}

/// One of the strings `allowed` at `param`, which must be there (`null` counts as missing).
pub(crate) fn required_choice<'a>(
    value: Option<&Value>,
    param: &str,
    allowed: &[&'a str],
) -> Result<&'a str, ApiError> {
    optional_choice(value, param, allowed)?.ok_or_else(|| ApiError::missing(param))
}

/// A non-empty array at `param` that must be there (`null` counts as missing).
pub(crate) fn required_array<'a>(
    value: Option<&'a Value>,
    param: &str,
) -> Result<&'a Vec<Value>, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::missing(param)),
        Some(Value::Array(items)) if items.is_empty() => Err(ApiError::empty_array(param)),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ApiError::invalid_type(param, "an array", other)),
    }
}

/// A number at `param` within `min..=max`; `expected` names its type as the service does
/// (`"a number"`, `"a decimal"`).
pub(crate) fn number_in(
    value: &Value,
    param: &str,
    expected: &str,
    range: (f64, f64),
) -> Result<f64, ApiError> {
    in_range(
        value,
        value.as_f64(),
        param,
        expected,
        range,
        ApiError::number_out_of_range,
    )
}

/// A non-negative integer at `param` within `min..=max`; `expected` names its type as the
/// service does (`"an integer"`).
pub(crate) fn integer_in(
    value: &Value,
    param: &str,
    expected: &str,
    range: (u64, u64),
) -> Result<u64, ApiError> {
    in_range(
        value,
        value.as_u64(),
        param,
        expected,
        range,
        ApiError::integer_out_of_range,
    )
}

/// `value` read as `got` (`None`: of the wrong type, `expected`) within `min..=max`, else
/// the `out_of_range` error.
fn in_range<T: PartialOrd + Copy>(
    value: &Value,
    got: Option<T>,
    param: &str,
    expected: &str,
    (min, max): (T, T),
    out_of_range: fn(&str, T, T, T) -> ApiError,
) -> Result<T, ApiError> {
    let got = got.ok_or_else(|| ApiError::invalid_type(param, expected, value))?;
    if min <= got && got <= max {
        Ok(got)
    } else {
        Err(out_of_range(param, got, min, max))
    }
}

/// An array at `param` whose every item `is_item`; the first that is not is of the wrong
/// type (`expected`, such as `"a string"`), named `param[index]`.
pub(crate) fn array_of<'a>(
    value: &'a Value,
    param: &str,
    expected: &str,
    is_item: fn(&Value) -> bool,
) -> Result<&'a Vec<Value>, ApiError> {
    let items = value
        .as_array()
        .ok_or_else(|| ApiError::invalid_type(param, "an array", value))?;
    match items.iter().enumerate().find(|(_, item)| !is_item(item)) {
        Some((index, item)) => Err(ApiError::invalid_type(
            &format!("{param}[{index}]"),
            expected,
            item,
        )),
        None => Ok(items),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_mistake_names_the_parameter_with_its_code() {
        const ROLES: &[&str] = &["user", "system"];
        let code = |error: ApiError| error.code.unwrap_or_default();
        assert_eq!(
            required_choice(Some(&json!("user")), "role", ROLES).ok(),
            Some("user")
        );
        assert_eq!(
            optional_choice(Some(&Value::Null), "role", ROLES).ok(),
            Some(None)
        );
        let missing = required_choice(None, "role", ROLES).expect_err("missing");
        assert_eq!(code(missing), "missing_required_parameter");
        let unknown = required_choice(Some(&json!("robot")), "role", ROLES).expect_err("unknown");
        assert_eq!(code(unknown), "invalid_value");
        let mistyped = required_string(Some(&json!(5)), "role").expect_err("a number");
        assert_eq!(mistyped.param.as_deref(), Some("role"));
        assert_eq!(code(mistyped), "invalid_type");
        let empty = required_array(Some(&json!([])), "messages").expect_err("empty");
        assert_eq!(code(empty), "empty_array");
        let high = integer_in(&json!(5), "n", "an integer", (1, 4)).expect_err("above");
        assert_eq!(code(high), "integer_above_max_value");
        let low = number_in(&json!(0.1), "x", "a number", (0.25, 4.0)).expect_err("below");
        assert_eq!(code(low), "decimal_below_min_value");
        let item = array_of(&json!(["a", 1]), "list", "a string", Value::is_string)
            .expect_err("a number among strings");
        assert_eq!(item.param.as_deref(), Some("list[1]"));
    }
}
