package fedwork

// SetBeforeRecordDelete sets the hook that runs between the members'
// deletes and the record's.
func (s *Service) SetBeforeRecordDelete(f func(name string)) { s.beforeRecordDelete = f }
