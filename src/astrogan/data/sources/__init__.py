"""Archive fetchers (APOD, NASA images, ESA/Hubble, ESA/Webb, ESO) and their shared polite client."""
