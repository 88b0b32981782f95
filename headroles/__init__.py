"""Head-role analysis (Concept Entropy over TextSpan texts) and the role map DeAR reads."""
