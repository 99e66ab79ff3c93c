"""Pure rendering: model in, file texts out. Never touches the disk."""

from functools import cache


@cache
def _env():
    """The Jinja2 environment of the templates (imported at the first render: most
    commands render nothing)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined
    env = Environment(
        loader=PackageLoader("linohost", "render/templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["py"] = repr
    return env


def render(template, **context):
    """Render the template file *template* with an explicit *context*."""
    return _env().get_template(template).render(**context)
