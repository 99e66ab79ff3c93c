"""Pure rendering: model in, file texts out. Never touches the disk."""

from jinja2 import Environment, PackageLoader, StrictUndefined

_env = Environment(
    loader=PackageLoader("linohost", "render/templates"),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
_env.filters["py"] = repr


def render(template, **context):
    """Render the template file *template* with an explicit *context*."""
    return _env.get_template(template).render(**context)
