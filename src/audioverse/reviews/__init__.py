"""Reviews and ratings: one review per listener per book, helpful votes, moderation, aggregates."""
