"""The web app's routes, one router per concern: the HTML pages, the flakes, the chip map,
uploads (detect, calibrate) and exports."""
