package fedsvc

// SetBeforeRecordDelete sets the hook that runs between the members'
// deletes and the record's.
func (c *Controller) SetBeforeRecordDelete(f func(name string)) { c.beforeRecordDelete = f }
