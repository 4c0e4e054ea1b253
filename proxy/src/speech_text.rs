//! TEMPORARY stub
#[derive(Debug, Default)]
pub struct SplitterConfig {}
#[derive(Debug)]
pub struct SentenceSplitter {}
impl SentenceSplitter {
    pub fn new(_c: SplitterConfig) -> Self {
        Self {}
    }
    pub fn push(&mut self, _d: &str, _o: &mut Vec<String>) {}
    pub fn finish(&mut self, _o: &mut Vec<String>) {}
}
