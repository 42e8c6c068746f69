//! AWS provider on aws-sdk-ec2.
