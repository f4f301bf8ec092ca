"""The browser apps served by this service: the listener's player at ``/`` and the curator admin."""
