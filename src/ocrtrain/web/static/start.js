// Start the page once every script has loaded (the CSP allows no inline script).
route();
