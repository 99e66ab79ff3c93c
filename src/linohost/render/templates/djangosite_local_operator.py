

def local_setup_site(self):
    """Your server-wide settings, applied to every site after linohost's.

    Example: self.django_settings.update(EMAIL_HOST="mail.example.org")
    """
