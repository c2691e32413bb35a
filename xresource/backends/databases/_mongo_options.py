"""MongoDB fields under their Motor-era (PyMongo URI option) names: accepted, and listed in the schema."""

from __future__ import annotations

from typing import Any

# Motor-era (PyMongo URI option) names accepted for our fields: alias -> (field, scale).
# A scale converts milliseconds to our seconds.
MOTOR_ALIASES: dict[str, tuple[str, float | None]] = {
    "maxPoolSize": ("max_pool_size", None),
    "minPoolSize": ("min_pool_size", None),
    "maxIdleTimeMS": ("max_idle_time_ms", None),
    "tlsCAFile": ("ca_file", None),
    "connectTimeoutMS": ("connect_timeout", 0.001),
    "waitQueueTimeoutMS": ("acquire_timeout", 0.001),
}


def motor_alias_schema(schema: dict[str, Any], cls: type) -> None:
    """List the Motor-era names in the JSON Schema too, so editors accept what we accept."""
    properties = schema.setdefault("properties", {})
    for alias, (field_name, scale) in MOTOR_ALIASES.items():
        if scale is None:
            entry = {k: v for k, v in properties.get(field_name, {}).items() if k not in ("title", "default")}
            entry["description"] = f"Motor-era name of `{field_name}`."
        else:
            entry = {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": f"Motor-era name of `{field_name}`, in milliseconds.",
            }
        entry["deprecated"] = True
        properties[alias] = entry


def motor_names(data: Any) -> Any:
    """``data`` with Motor-era names renamed to our fields (milliseconds scaled to seconds)."""
    if not isinstance(data, dict) or not any(alias in data for alias in MOTOR_ALIASES):
        return data
    data = dict(data)
    for alias, (field_name, scale) in MOTOR_ALIASES.items():
        if alias not in data:
            continue
        if field_name in data:
            raise ValueError(f"{alias} and {field_name} name the same setting; keep {field_name}")
        value = data.pop(alias)
        if scale is not None and isinstance(value, int | float) and not isinstance(value, bool):
            value = value * scale
        data[field_name] = value
    return data
