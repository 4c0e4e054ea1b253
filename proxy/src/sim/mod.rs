//! TEMPORARY stub; replaced by the simulator branch.
#[derive(Debug, Default)]
pub struct SimConfig {}
#[derive(Debug)]
pub struct Simulator {}
impl Simulator {
    pub async fn start(_c: SimConfig) -> std::io::Result<Simulator> {
        Ok(Simulator {})
    }
    pub fn base_url(&self) -> String {
        "http://127.0.0.1:1/v1".into()
    }
}
