"""The settings of a site under a URL prefix install linohost's prefix plugin
(local/under_prefix) and its middleware; a site on its own host name does not."""

from linohost.model.site import Site
from linohost.render import site as render_site


def settings(prefix, front_end):
    site = Site(name="shop", app="cosi", settings_module="lino_cosi.lib.cosi.settings",
                env="default", db="sqlite", title="Shop", front_end=front_end)
    text = render_site.settings_py(site, site_prefix=prefix, static_root="/srv/static",
                                   allowed_hosts=["localhost"])
    compile(text, "settings.py", "exec")
    return text


def test_only_sites_under_a_prefix_install_the_plugin():
    for front_end in render_site.FRONT_ENDS:
        under = settings("/shop/", front_end)
        assert "yield 'under_prefix'" in under
        assert "yield 'under_prefix.RootRedirects'" in under
        own = settings("/", front_end)
        assert "under_prefix" not in own


def test_the_plugin_module_is_valid_python_with_what_settings_name():
    text = render_site.prefix_plugin()
    compile(text, "under_prefix/__init__.py", "exec")
    assert "\nclass Plugin(ad.Plugin):" in text and "\nclass RootRedirects:" in text
