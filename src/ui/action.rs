//! Everything a key can do. `keys` maps keys to actions per mode (the
//! views, and each overlay); `app` applies them.

/// An action of the workstation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Take the model's prediction as the label.
    Accept,
    /// Take the n-th suggested label (1-based; only one on screen).
    Pick(usize),
    OpenPicker,
    Skip,
    Undo,
    Retrain,
    NextView,
    CycleStrategy,
    Export,
    ToggleHelp,
    /// All-rows view: filter by a label (picker) or clear the filter.
    Filter,
    /// All-rows view: sort by confidence (ascending, descending, off).
    SortConfidence,
    /// All-rows view: search the texts (again: clear the search).
    Search,
    /// Read the selected row's whole text (scrollable).
    Read,
    /// The labelled view in review order: the person's labels that a model
    /// trained without them disputes, most disputed first (again: all).
    Review,
    /// The labelled view as the disputes: rows two annotators labelled
    /// differently, for the adjudicator to settle (again: all labels).
    Disputes,
    /// Fine-tune the encoder now, or cancel the running fine-tune.
    FineTune,
    /// Next training mode: auto, head, finetune, contrastive.
    CycleMode,
    Quit,
    // Inside an overlay:
    Input(char),
    Backspace,
    Confirm,
    Cancel,
    /// In the picker: edit the highlighted label's description.
    EditDescription,
    None,
}
