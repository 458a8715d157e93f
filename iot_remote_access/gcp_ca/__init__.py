"""Device certificates from Google Cloud Certificate Authority Service: the CA pool and CA
``gcp plan|deploy`` render (``desired``, ``plan``, ``deploy``) and the issuer the rotation
service signs through (``issuer``)."""
