"""Model versions side by side: variants, who gets which, rollouts and feedback."""
