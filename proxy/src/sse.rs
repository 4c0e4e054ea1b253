//! TEMPORARY stub
#[derive(Debug, Default)]
pub struct SseParser {}
#[derive(Debug)]
pub enum SseEvent {
    Data { data: String, event: Option<String> },
    Done,
}
#[derive(Debug)]
pub struct SseError;
impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("x")
    }
}
impl SseParser {
    pub fn new() -> Self {
        Self {}
    }
    pub fn push(&mut self, _b: &[u8], _o: &mut Vec<SseEvent>) -> Result<(), SseError> {
        Ok(())
    }
    pub fn finish(&mut self, _o: &mut Vec<SseEvent>) -> Result<(), SseError> {
        Ok(())
    }
}
