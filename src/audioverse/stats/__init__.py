"""A listener's statistics: read from listening and reviews alike, so layered above both."""
