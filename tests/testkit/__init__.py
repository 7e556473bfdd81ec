"""What the tests share: clients, peers and data builders (imported as `testkit.*`)."""
