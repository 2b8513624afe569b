"""Looking inside trained models: spike activity, energy estimates, evaluation plots."""
